"""Benchmarks, run by command (`python -m benchmarks.data`); each reports ratios against a
baseline measured in the same run."""
