"""Benchmark harness: wrk against `smartpip serve`, as a ratio to a bare-ASGI ceiling.

Run it with ``python -m bench.run``; see ``bench/README.md``.
"""
