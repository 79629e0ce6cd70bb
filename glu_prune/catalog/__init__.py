"""What exists: the model registry (HF ids, embedded architectures, levels) and the
benchmark registry (lm-eval task, few-shot, metrics with direction, group).
"""
