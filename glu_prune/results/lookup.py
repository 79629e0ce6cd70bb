"""What the tables need from the registries: benchmark order, groups, directions, chance
levels, test-set sizes and architecture rows; and the order of records (sort keys, dedupe).

Every lookup is cached and returns nothing for a model or benchmark the registries do not
know (results of other producers still show).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any, Iterable

from glu_prune.catalog import benchmarks as catalog_benchmarks
from glu_prune.catalog import models as catalog_models
from glu_prune.core.arithmetic import expansion_table
from glu_prune.results.record import KIND_ORDER, Record

LOG = logging.getLogger(__name__)


_CHANCE_METRICS = ("acc", "acc_norm")  # chance applies to choice accuracy, not exact match


def _canonical_order() -> list[str]:
    """Every model's benchmarks in the base models' order (instruct sets list theirs in
    another order; one order lets base and instruct tables be read side by side)."""
    base = catalog_benchmarks.BASE_NAMES
    return list(base) + [b for b in catalog_benchmarks.REAL_BENCHMARKS if b not in base]


@lru_cache(maxsize=None)
def _benchmark_info(model: str) -> dict[str, dict[str, Any]]:
    """name -> {index, group, directions, metrics, chance, n}; empty when the registry
    cannot say."""
    try:
        benches = catalog_benchmarks.benchmarks_for(model)
    except Exception as exc:  # noqa: BLE001  (unknown models are fine: nothing to say)
        LOG.debug("no benchmark registry for %s: %s", model, exc)
        return {}
    order = _canonical_order()
    return {b.name: {"index": order.index(b.name) if b.name in order else len(order) + i,
                     "group": b.group, "metrics": [m.key for m in b.metrics],
                     "directions": {m.key: m.direction for m in b.metrics},
                     "chance": b.chance, "n": b.n}
            for i, b in enumerate(benches)}


def chance_level(model: str, benchmark: str, metric: str) -> float | None:
    """Chance level of a choice-accuracy metric (``acc``, ``acc_norm``), else None."""
    if metric.partition(",")[0] not in _CHANCE_METRICS:
        return None
    return (_benchmark_info(model).get(benchmark) or {}).get("chance")


def registry_size(model: str, benchmark: str) -> int | None:
    """The benchmark's test-set size from the registry (None when unknown)."""
    return (_benchmark_info(model).get(benchmark) or {}).get("n")


@lru_cache(maxsize=None)
def _architecture_rows(model: str, levels: tuple[float, ...], round_to: int) -> list[dict]:
    try:
        # the family's own config class: parameters are counted exactly from it
        config = catalog_models.make_config(model)
        return expansion_table(config, levels, round_to=round_to)
    except (KeyError, ValueError) as exc:
        LOG.debug("no architecture for %s: %s", model, exc)
        return []


def architecture(model: str, pct: float, round_to: int) -> dict[str, Any] | None:
    rows = _architecture_rows(model, (0.0, float(pct)), round_to)
    if not rows:
        return None
    base, row = rows
    # percentage actually removed (differs from the level when round_to > 1)
    removed = 100.0 * (base["intermediate_size"] - row["intermediate_size"]) \
        / base["intermediate_size"]
    return {**row, "pruned_pct": removed}


def model_index(model: str) -> int:
    """Position of ``model`` in the registry (unknown models last)."""
    try:
        return list(catalog_models.MODELS).index(model)
    except ValueError:
        return 10**6


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


_PERF_ORDER = ("ttft", "tpot", "throughput", "mlp", "energy")


def benchmark_key(model: str, benchmark: str) -> tuple:
    """Registry order for known benchmarks, then speed benchmarks by family, then by name."""
    info = _benchmark_info(model).get(benchmark)
    if info is not None:
        return (0, info["index"], ())
    family = re.split(r"[@\-_]", benchmark)[0]
    fam = _PERF_ORDER.index(family) if family in _PERF_ORDER else len(_PERF_ORDER)
    return (1, fam, _natural(benchmark))


def metric_key(model: str, benchmark: str, metric: str) -> tuple:
    info = _benchmark_info(model).get(benchmark)
    if info is not None and metric in info["metrics"]:
        return (0, info["metrics"].index(metric), metric)
    return (1, 0, metric)


def sort_key(r: Record) -> tuple:
    """Models in registry order, levels ascending, benchmarks in registry order."""
    kind = KIND_ORDER.index(r.kind) if r.kind in KIND_ORDER else len(KIND_ORDER)
    return (model_index(r.model), r.model, r.pct if r.pct is not None else -1.0,
            r.method or "", r.round_to, kind, benchmark_key(r.model, r.benchmark),
            metric_key(r.model, r.benchmark, r.metric), r.variant, r.test or "")


def sort_records(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=sort_key)


def same_measurement(a: Record, b: Record) -> bool:
    """Whether two records of one identity agree (then one of them is a harmless copy)."""
    return (a.value, a.stderr, a.verdict, a.baseline) == (b.value, b.stderr, b.verdict,
                                                          b.baseline)


def dedupe(pairs: Iterable[tuple[Record, str]]) -> tuple[list[Record], list[str]]:
    """Drop copies of the same measurement; ``pairs`` are (record, where it came from).

    Returns (sorted records, conflicts); a conflict names model / variant / kind /
    benchmark / metric, both values and both sources.
    """
    seen: dict[tuple, tuple[Record, str]] = {}
    conflicts: list[str] = []
    for r, source in pairs:
        old = seen.get(r.identity)
        if old is None:
            seen[r.identity] = (r, source)
        elif not same_measurement(old[0], r):
            conflicts.append(f"{' / '.join(r.identity)}: {old[0].value!r} from {old[1]} vs "
                             f"{r.value!r} from {source}")
    return sort_records(r for r, _ in seen.values()), conflicts
