"""Test helpers shared across test packages: fault injection, polling, scratch databases."""
