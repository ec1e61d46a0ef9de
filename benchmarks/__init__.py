"""Benchmarks of sideline: `python benchmarks/run.py --help`."""
