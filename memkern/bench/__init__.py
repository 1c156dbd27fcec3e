"""Benchmarks: retrieval quality and speed of memkern against plain baselines (``memkern bench``)."""
