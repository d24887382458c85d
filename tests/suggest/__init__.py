"""Tests of smartpip.suggest: query normalization and result ranking (pure, no I/O)."""
