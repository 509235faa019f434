"""nationmap benchmarks: where time and memory go (``python -m benchmarks``; see README.md)."""
