"""Timing (prefill, decode, throughput, paired rounds), perf settings and
models, and the NVML energy meter.
"""
