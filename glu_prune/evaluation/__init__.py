"""lm-eval on an in-memory model, one benchmark at a time; content identities
and the result cache; checks that run before evaluation.
"""
