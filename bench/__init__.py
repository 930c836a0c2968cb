"""Benchmark harness: `uv run --group bench python -m bench` (see bench/README.md)."""
