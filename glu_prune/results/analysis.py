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


def _change_se(r: Record, ref: Record | None) -> float | None:
    """Standard error of ``r``'s relative change vs ``ref`` (else its baseline), by the
    delta method with independent errors; None when neither side has a standard error."""
    ref_value, se_ref = (ref.value, ref.stderr) if ref is not None else (r.baseline,
                                                                         r.baseline_stderr)
    if (r.stderr is None and se_ref is None) or not ref_value:
        return None
    se_v, se_ref = r.stderr or 0.0, se_ref or 0.0
    num, den, se_num, se_den = ((ref_value, r.value, se_ref, se_v) if r.direction == "lower"
                                else (r.value, ref_value, se_v, se_ref))
    return math.hypot(se_num / den, num * se_den / den ** 2) if den else None


def _changes(records: Sequence[Record], key: Callable[[Record], Hashable]
             ) -> dict[Hashable, dict[str, list[tuple[float, float | None]]]]:
    """Per variant: benchmark -> [(relative change, its standard error), ...] per metric."""
    recs = [r for r in records if r.kind in QUALITY_KINDS]
    refs, noise = level_zero_records(recs), set(chance_benchmarks(recs)) if recs else set()
    out: dict[Hashable, dict[str, list[tuple[float, float | None]]]] = {}
    for r in recs:
        if unpruned(r) or r.benchmark in noise:
            continue
        ref = refs.get((r.benchmark, r.metric))
        ref_value = ref.value if ref is not None else r.baseline
        change = quality_change(r.value, ref_value, r.direction) if ref_value else None
        if change is not None:
            out.setdefault(key(r), {}).setdefault(r.benchmark, []).append(
                (change, _change_se(r, ref)))
    return out


def benchmark_changes(records: Sequence[Record], key: Callable[[Record], Hashable] = variant_key
                      ) -> dict[Hashable, dict[str, float]]:
    """Per variant (``key``: (pct, method, round_to), or e.g. the slug): benchmark -> mean
    quality change over its metrics (vs level 0, else vs baseline). Level 0 itself is left
    out, and so are benchmarks at chance at level 0."""
    return {k: {b: sum(c for c, _ in v) / len(v) for b, v in d.items()}
            for k, d in _changes(records, key).items()}


def _groups(records: Sequence[Record]) -> dict[str, str]:
    return {r.benchmark: r.group for r in records if r.group}


def group_means(records: Sequence[Record], key: Callable[[Record], Hashable] = variant_key
                ) -> dict[Hashable, dict[str, float]]:
    """Per variant (``key`` as in :func:`benchmark_changes`): group ("fragile", "robust",
    "all") -> mean relative change."""
    groups = _groups(records)
    out = {}
    for variant, changes in benchmark_changes(records, key).items():
        means = {}
        for g in ("fragile", "robust", None):
            vals = [c for b, c in changes.items() if g is None or groups.get(b) == g]
            if vals:
                means[g or "all"] = sum(vals) / len(vals)
        out[variant] = means
    return dict(sorted(out.items()))


GROUP_Z = 1.96  # group means carry a 95 % interval


def group_half_widths(records: Sequence[Record], key: Callable[[Record], Hashable] = variant_key
                      ) -> dict[Hashable, dict[str, float]]:
    """Per variant and group (as :func:`group_means`): the half-width of the mean's 95 %
    interval, from each benchmark's standard error of its change (the mean of its metrics'
    ones), benchmarks independent. A metric without a standard error (wikitext perplexity)
    counts as exact; a group where none has one gets no interval."""
    groups = _groups(records)
    out: dict[Hashable, dict[str, float]] = {}
    for variant, changes in _changes(records, key).items():
        ses = {b: [se for _, se in v if se is not None] for b, v in changes.items()}
        for g in ("fragile", "robust", None):
            members = [b for b in changes if g is None or groups.get(b) == g]
            known = [sum(ses[b]) / len(ses[b]) for b in members if ses[b]]
            if members and known:
                out.setdefault(variant, {})[g or "all"] = (
                    GROUP_Z * math.sqrt(sum(se ** 2 for se in known)) / len(members))
    return out


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
