"""Benchmarks: commands, not tests. Each measures a baseline in the same run."""
