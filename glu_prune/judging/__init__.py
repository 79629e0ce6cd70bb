"""Baselines, and the one tolerance / verdict / pin-and-update flow for quality
and for speed.
"""
