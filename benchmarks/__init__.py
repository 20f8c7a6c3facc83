"""Side-by-side measurements of tfcompress; ``python -m benchmarks.run``."""
