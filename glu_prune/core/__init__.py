"""What pruning is: importance scores, config arithmetic (kept counts, parameters,
FLOPs, bytes, ideal speedups), surgery, variants, loading.
"""
