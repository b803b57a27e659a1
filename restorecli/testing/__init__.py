"""Reference code for tests and benchmarks, never imported by the product.

:mod:`restorecli.testing.official` writes out the official Restormer and NAFNet forward passes over
our modules' weights; the test suite checks our fast forwards and the profiler's MAC counts
against it, and ``bench/bench_performance.py`` times it as the reference path.
"""
