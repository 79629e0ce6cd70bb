"""Formatting numbers and tables: level labels, values, changes and their marks.

Showing only: verdicts are computed by the judging code and speedups by the measuring code.
"""

from __future__ import annotations

import math

from tabulate import tabulate

from glu_prune.results.record import Record

MARKS = {"regression": " **REG**", "improvement": " *IMP*", "pinned": " (pinned)"}
WORSE, BETTER = "▼", "▲"
ARROWS = {"higher": "↑", "lower": "↓"}
Table = tuple[list[str], list[list[str]]]


def level_label(pct: float | None, round_to: int = 1, method: str | None = None,
                with_method: bool = False) -> str:
    """``p40`` / ``p40-r128`` (plus ``maw`` when several methods are shown)."""
    if pct is None:
        return "-"
    text = f"p{pct:g}" + (f"-r{round_to}" if round_to > 1 else "")
    return f"{text} {method}" if with_method and method and pct > 0 else text


def quality_change(value: float, ref: float, direction: str | None) -> float | None:
    """Relative change in quality: value/ref - 1, or ref/value - 1 when lower is better."""
    if math.isnan(value) or math.isnan(ref):
        return None
    num, den = (ref, value) if direction == "lower" else (value, ref)
    return num / den - 1.0 if den else None  # accuracy 0 is -100 %, a zero ref has no ratio


def fmt_number(value: float, unit: str) -> str:
    if unit == "s" and abs(value) < 1:  # latencies read better in milliseconds
        return f"{1000 * value:.4g} ms"
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def fmt_value(r: Record) -> str:
    if r.kind == "accuracy" and abs(r.value) <= 1:
        return f"{r.value:.3f}"
    if r.kind == "perplexity":
        return f"{r.value:.2f}"
    return fmt_number(r.value, r.unit)


def _direction_mark(r: Record, ref: float) -> str:
    """▼ when ``r`` is worse than ``ref`` in its metric's direction, ▲ when better."""
    if r.direction not in ARROWS or r.value == ref:
        return ""
    better = r.value > ref if r.direction == "higher" else r.value < ref
    return f" {BETTER if better else WORSE}"


def fmt_change(r: Record, ref: float) -> str:
    if r.kind == "accuracy" and abs(r.value) <= 1 and abs(ref) <= 1:
        text = f"{100 * (r.value - ref):+.1f}"  # points
    elif not ref:
        return "n/a"
    else:
        text = f"{100 * (r.value / ref - 1):+.1f}%"
    return text + _direction_mark(r, ref)


def render(table: Table, fmt: str = "github") -> str:
    headers, rows = table
    # cells are pre-formatted strings: no re-parsing, so two runs print identically
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
