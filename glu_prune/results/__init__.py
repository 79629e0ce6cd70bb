"""The results record, analysis, tables, plots, writing and merging.
"""
