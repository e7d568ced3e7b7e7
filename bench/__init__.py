"""Benchmarks: the serving comparison run and micro-benchmarks of shared code."""
