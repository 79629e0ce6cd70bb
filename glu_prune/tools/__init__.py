"""Tools beside the suite: tiny-model training and method comparison, the dress
rehearsal, building the reference baselines.
"""
