"""Benchmarks: each prints numbers and compares against a baseline measured in the same run."""
