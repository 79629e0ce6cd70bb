"""What the tables say about records: at chance, changes vs level 0, group means,
regressions, verdict counts; and grouping records by model, variant and column.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Hashable, Iterable, Sequence

from glu_prune.results.format import quality_change
from glu_prune.results.lookup import (benchmark_key, chance_level, metric_key, registry_size,
                                      sort_records)
from glu_prune.results.record import QUALITY_KINDS, Record

CHANCE_Z = 2.0  # "at chance": within this many standard errors of a uniform guess


def _standard_error(r: Record) -> float | None:
    if r.stderr is not None:
        return r.stderr
    chance, n = chance_level(r.model, r.benchmark, r.metric), r.n or registry_size(
        r.model, r.benchmark)
    return math.sqrt(chance * (1 - chance) / n) if chance is not None and n else None


def chance_label(r: Record | None) -> str | None:
    """``at chance`` for an accuracy within ``CHANCE_Z`` standard errors of chance (the
    binomial one at chance when the record has none), ``below chance`` under that band,
    else None: either way it carries no signal."""
    if r is None or r.kind != "accuracy":
        return None
    chance = chance_level(r.model, r.benchmark, r.metric)
    if chance is None:
        return None
    band = CHANCE_Z * (_standard_error(r) or 0.0)
    if r.value < chance - band:
        return "below chance"
    return "at chance" if r.value <= chance + band else None


def at_chance(r: Record | None) -> bool:
    """Whether an accuracy is at or below chance (see :func:`chance_label`)."""
    return chance_label(r) is not None


VariantKey = tuple[float, str, int]  # (pct, method, round_to)


def variant_key(r: Record) -> VariantKey:
    return (r.pct if r.pct is not None else -1.0, r.method or "", r.round_to)


def columns_of(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(benchmark, metric) columns in registry order."""
    model = records[0].model
    cols = {(r.benchmark, r.metric) for r in records}
    return sorted(cols, key=lambda c: (benchmark_key(model, c[0]), metric_key(model, *c)))


def split_primary(cols: list[tuple[str, str]]) -> tuple[list, list]:
    """(first metric of each benchmark, the other metrics): one column per benchmark keeps
    the main table readable; the rest get their own table."""
    primary, seen = [], set()
    for bench, metric in cols:
        if bench not in seen:
            seen.add(bench)
            primary.append((bench, metric))
    return primary, [c for c in cols if c not in primary]


def several_methods(records: Sequence[Record]) -> bool:
    return len({r.method for r in records if r.pct}) > 1


def level_zero_records(records: Sequence[Record]) -> dict[tuple[str, str], Record]:
    """Level-0 record per (benchmark, metric): what every change is measured against."""
    return {(r.benchmark, r.metric): r for r in records if r.pct == 0 and r.shape == "width"}


def by_variant(records: Sequence[Record]) -> dict[VariantKey, dict[tuple[str, str], Record]]:
    rows: dict[VariantKey, dict[tuple[str, str], Record]] = {}
    for r in sort_records(records):
        rows.setdefault(variant_key(r), {})[(r.benchmark, r.metric)] = r
    return rows


def chance_benchmarks(records: Sequence[Record]) -> list[str]:
    """Benchmarks whose main metric is at chance at level 0: their changes are noise."""
    recs = [r for r in records if r.kind in QUALITY_KINDS]
    if not recs:
        return []
    refs = level_zero_records(recs)
    main = split_primary(columns_of(recs))[0]
    return [b for b, m in main if at_chance(refs.get((b, m)))]


def unpruned(r: Record) -> bool:
    """Whether ``r`` measures level 0 (or names no level): what changes are measured against,
    never a change itself. A depth record's pct is None, yet it is pruned."""
    return r.shape == "width" and not r.pct


def benchmark_changes(records: Sequence[Record], key: Callable[[Record], Hashable] = variant_key
                      ) -> dict[Hashable, dict[str, float]]:
    """Per variant (``key``: (pct, method, round_to), or e.g. the slug): benchmark -> mean
    quality change over its metrics (vs level 0, else vs baseline). Level 0 itself is left
    out, and so are benchmarks at chance at level 0."""
    recs = [r for r in records if r.kind in QUALITY_KINDS]
    refs, noise = level_zero_records(recs), set(chance_benchmarks(recs)) if recs else set()
    out: dict[Hashable, dict[str, list[float]]] = {}
    for r in recs:
        if unpruned(r) or r.benchmark in noise:
            continue
        ref = refs.get((r.benchmark, r.metric))
        ref_value = ref.value if ref is not None else r.baseline
        change = quality_change(r.value, ref_value, r.direction) if ref_value else None
        if change is not None:
            out.setdefault(key(r), {}).setdefault(r.benchmark, []).append(change)
    return {k: {b: sum(v) / len(v) for b, v in d.items()} for k, d in out.items()}


def group_means(records: Sequence[Record], key: Callable[[Record], Hashable] = variant_key
                ) -> dict[Hashable, dict[str, float]]:
    """Per variant (``key`` as in :func:`benchmark_changes`): group ("fragile", "robust",
    "all") -> mean relative change."""
    groups = {r.benchmark: r.group for r in records if r.group}
    out = {}
    for variant, changes in benchmark_changes(records, key).items():
        means = {}
        for g in ("fragile", "robust", None):
            vals = [c for b, c in changes.items() if g is None or groups.get(b) == g]
            if vals:
                means[g or "all"] = sum(vals) / len(vals)
        out[variant] = means
    return dict(sorted(out.items()))


def by_model(records: Iterable[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in sort_records(records):
        out.setdefault(r.model, []).append(r)
    return out


def regressions(records: Iterable[Record]) -> list[str]:
    """One line per regression record: variant, benchmark, metric, value vs baseline."""
    return [f"{r.variant} {r.benchmark} {r.metric}: {r.value:.4g} vs baseline "
            f"{'-' if r.baseline is None else f'{r.baseline:.4g}'}"
            for r in sort_records(records) if r.verdict == "regression"]


COUNT_WORDS = {"ok": "ok (within tolerance)", "not judged": "not judged (shown only)",
               "no baseline": "no baseline (nothing stored to compare with)"}


def count_line(records: Sequence[Record]) -> str:
    """``152 records: 119 ok (within tolerance), ...``: every verdict named in words."""
    counts = defaultdict(int)
    for r in records:
        counts[r.verdict or "not judged"] += 1
    parts = [f"{n} {COUNT_WORDS.get(v, v)}" for v, n in sorted(counts.items())]
    return f"{len(records)} records: {', '.join(parts)}."
