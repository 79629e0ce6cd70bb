"""results.md's "Width vs depth at equal parameters": per width level, the variants of every
shape that match its parameter count (the width and global-width variants of that level,
and per depth method the depth variant whose count is closest), side by side: parameters,
each benchmark's change vs level 0, the fragile and robust group means, and the measured
speed ratios beside their ideal ones.

Showing only: the matching is recomputed from the records' own parameter counts (the rule
the suite selects depth variants by); what was not measured shows as not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from glu_prune.results.analysis import (chance_benchmarks, columns_of, group_means,
                                        level_zero_records, split_primary, unpruned)
from glu_prune.results.format import Table, fmt_change, level_label
from glu_prune.results.perf_tables import (family, perf_records, significant, speedup_cell,
                                           speedup_of)
from glu_prune.results.record import QUALITY_KINDS, SHAPES, SPEED_KINDS, Record

TITLE = "Width vs depth at equal parameters"
SPEED_FAMILIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("throughput", "throughput"),
                  ("energy-decode", "J / token"))
LEGEND = ("One block of rows per width level: that level's uniform-width and global-width "
          "variants (the same parameter count), and per depth method the depth variant whose "
          "parameter count is closest. Benchmarks: change vs level 0 (points for accuracy, % "
          "for perplexity; ▼ worse, ▲ better); fragile / robust: mean relative change of the "
          "group. Speed: measured speedup vs level 0, then the ideal one (FLOP ratio for "
          "prefill, weight-byte ratio for decode, of each shape's own config) and measured / "
          "ideal; a depth variant's speed is timed once per number of layers removed (which "
          "layers go does not change the cost); `not measured` where no run timed that "
          "variant.")


@dataclass(frozen=True)
class Member:
    """One variant in the comparison: its slug, shape, label and quality records."""

    slug: str
    shape: str
    label: str
    params: int | None
    records: tuple[Record, ...]


def _label(r: Record) -> str:
    if r.shape == "depth":
        removed = r.extra.get("removed_layers")
        layers = r.extra.get("layers_removed", len(removed or []))
        return f"depth {r.method} −{layers} layers" + (f" {removed}" if removed else "")
    return f"{r.shape} {r.method}" + (f" r{r.round_to}" if r.round_to > 1 else "")


def members(records: Sequence[Record]) -> list[Member]:
    """Every pruned variant with quality records, in shape order; when no quality test ran,
    every pruned variant a speed test timed (so a speed-only run still compares shapes)."""
    quality = [r for r in records if r.kind in QUALITY_KINDS]
    chosen = quality or [r for r in records if r.kind in SPEED_KINDS]
    by_slug: dict[str, list[Record]] = {}
    for r in chosen:
        if not unpruned(r):
            by_slug.setdefault(r.variant, []).append(r)
    out = [Member(slug, recs[0].shape, _label(recs[0]),
                  next((r.params for r in recs if r.params is not None), None), tuple(recs))
           for slug, recs in by_slug.items()]
    return sorted(out, key=lambda m: (SHAPES.index(m.shape), m.label, m.slug))


def blocks(records: Sequence[Record]) -> list[tuple[str, int, list[Member]]]:
    """(level label, parameter count, matched members) per width level that has a width or
    global variant with a parameter count; depth variants join the level whose count they
    come closest to, per method (ties: the fewer layers removed)."""
    everyone = members(records)
    levels: dict[tuple[float, int], int] = {}
    for m in everyone:
        r = m.records[0]
        if m.shape != "depth" and m.params is not None:
            levels.setdefault((r.pct, r.round_to), m.params)
    out = []
    for (pct, rt), params in sorted(levels.items()):
        chosen = [m for m in everyone if m.shape != "depth" and
                  (m.records[0].pct, m.records[0].round_to) == (pct, rt)]
        for method in sorted({m.records[0].method for m in everyone if m.shape == "depth"}):
            depth = [m for m in everyone if m.shape == "depth" and m.params is not None
                     and m.records[0].method == method]
            if depth:
                chosen.append(min(depth, key=lambda m: (abs(m.params - params),
                                                        m.records[0].extra.get("layers_removed", 0))))
        out.append((level_label(pct, rt), params, sorted(chosen, key=everyone.index)))
    return out


def _params_cell(params: int | None, base: int | None) -> str:
    if params is None:
        return "-"
    text = f"{params / 1e6:.4g} M"
    return f"{text} ({100 * (params / base - 1):+.1f} %)" if base else text


def quality_table(records: Sequence[Record]) -> Table:
    """Rows per matched variant: level, variant, parameters, each benchmark's change vs
    level 0 (its first metric), fragile and robust means."""
    quality = [r for r in records if r.kind in QUALITY_KINDS]
    if not quality:
        return [], []
    refs = level_zero_records(quality)
    base = next((r.params for r in refs.values() if r.params is not None), None)
    primary = split_primary(columns_of(quality))[0]
    means = group_means(quality, key=lambda r: r.variant)
    rows = []
    for level, _params, chosen in blocks(records):
        for m in chosen:
            own = {(r.benchmark, r.metric): r for r in m.records}
            cells = [_change_cell(own.get(col), refs.get(col)) for col in primary]
            g = means.get(m.slug, {})
            rows.append([level, m.label, _params_cell(m.params, base), *cells,
                         _mean(g.get("fragile")), _mean(g.get("robust"))])
    headers = ["level", "variant", "parameters (vs p0)", *[b for b, _ in primary],
               "fragile ↑", "robust ↑"]
    return headers, rows


def _change_cell(r: Record | None, ref: Record | None) -> str:
    if r is None:
        return "not measured"
    return fmt_change(r, ref.value) if ref is not None else "no level 0"


def _mean(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f} %"


def speed_columns(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(speed benchmark, header) per family measured: the first condition of each."""
    names = sorted({r.benchmark for r in perf_records(records)})
    out = []
    for fam, header in SPEED_FAMILIES:
        bench = next((b for b in names if family(b) == fam), None)
        if bench is not None:
            out.append((bench, f"{header} ({bench})"))
    return out


def _perf_key(r: Record) -> tuple:
    """What identifies a variant across quality and speed records (speed runs carry no
    calibration tag, so not the slug). A depth variant's speed is its layer count's: the
    suite times one per count (its layers are all the same size, so which go does not
    change the cost), whatever method chose the layers of the quality variant."""
    if r.shape == "depth":
        return ("depth", r.extra.get("layers_removed"))
    return (r.shape, r.method, r.pct, r.round_to)


def _own(m: Member, bench: str, perf: Sequence[Record]) -> Record | None:
    """The speed record of member ``m`` on ``bench`` (None: not timed)."""
    return next((p for p in perf if p.benchmark == bench and
                 _perf_key(p) == _perf_key(m.records[0])), None)


def _ideal(m: Member, bench: str, perf: Sequence[Record]) -> float | None:
    """The ideal its own speed record carries (from the built model's config), else
    depth: the layer fraction; width and global (the same FLOPs and weight bytes): the
    ideal a width speed record of the level carries."""
    own = _own(m, bench, perf)
    if own is not None and own.ideal:
        return own.ideal
    r = m.records[0]
    if m.shape == "depth":
        before, after = r.extra.get("layers_before"), r.extra.get("layers_after")
        return before / after if before and after else None
    same = (r.pct, r.round_to)
    return next((p.ideal for p in perf if p.benchmark == bench and p.shape == "width"
                 and (p.pct, p.round_to) == same and p.ideal), None)


def _reference(bench: str, perf: Sequence[Record]) -> Record | None:
    """Level 0's speed record on ``bench`` (what every speedup is against)."""
    return next((p for p in perf if p.benchmark == bench and unpruned(p)), None)


def speedup(m: Member, bench: str, perf: Sequence[Record]) -> float | None:
    """The measured speedup of member ``m`` on speed benchmark ``bench`` (None: not timed)."""
    own = _own(m, bench, perf)
    return speedup_of(own, _reference(bench, perf))[0] if own is not None else None


def _speed_cell(m: Member, bench: str, perf: Sequence[Record]) -> str:
    """``1.33x [1.30-1.36] (ideal 1.33x, 1.00)``; **n.s.** with its interval when the
    interval holds 1 (then no measured / ideal: no speed change was measured)."""
    ideal, own = _ideal(m, bench, perf), _own(m, bench, perf)
    ideal_text = f"ideal {ideal:.2f}x" if ideal else "ideal -"
    if own is None:
        return f"not measured ({ideal_text})"
    ref = _reference(bench, perf)
    measured = speedup_of(own, ref)[0]
    ratio = f", {measured / ideal:.2f}" if ideal and measured and significant(own) else ""
    return f"{speedup_cell(own, ref)} ({ideal_text}{ratio})"


def speed_table(records: Sequence[Record]) -> Table:
    """Rows per matched variant: each speed family's measured speedup vs level 0 and its
    ideal (empty when no speed benchmark ran for the model)."""
    columns, perf = speed_columns(records), perf_records(records)
    if not columns:
        return [], []
    rows = [[level, m.label, *[_speed_cell(m, b, perf) for b, _ in columns]]
            for level, _params, chosen in blocks(records) for m in chosen]
    return ["level", "variant", *[h for _, h in columns]], rows


def shapes_compared(records: Sequence[Record]) -> bool:
    """Whether the records hold a variant of a shape other than width (the section's cue)."""
    return any(r.shape != "width" for r in records)


def section(model: str, records: Sequence[Record], render: Callable[[Table], str]
            ) -> list[str]:
    """The section's markdown lines for one model ([] when only width ran)."""
    if not shapes_compared(records):
        return []
    lines = [f"### {TITLE}", "", LEGEND, ""]
    quality, speed = quality_table(records), speed_table(records)
    left_out = chance_benchmarks([r for r in records if r.kind in QUALITY_KINDS])
    if quality[1]:
        lines += [render(quality), ""]
        if left_out:
            lines += [f"Left out of the means (at chance at level 0): {', '.join(left_out)}.",
                      ""]
    elif not any(r.kind in QUALITY_KINDS for r in records):
        lines += ["Quality: not measured for this model (no accuracy or perplexity test "
                  "ran).", ""]
    else:
        lines += ["Quality: no variant of a matched level was measured.", ""]
    lines += ([render(speed), ""] if speed[1] else
              ["Speed: not measured for this model (no latency or energy test ran).", ""])
    lines += [f"Plot (with `--glu-plots`): `{model}-shapes.png`, quality change against "
              f"decode speedup, one point per variant.", ""]
    return lines
