"""Session state of the latency/energy tests: judging rows against the device
baselines, their records, and the terminal summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from glu_prune.judging.speed import PerfBaselines
from glu_prune.performance.models import PerfModel, PerfModels
from glu_prune.performance.settings import CONFIDENCE, PerfSettings, PerfVariant
from glu_prune.performance.stats import Row


def make_record(*, variant: str, benchmark: str, metric: str, value: Any, unit: str,
                baseline: float | None = None, verdict: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """One plain record for the results table (the shape every suite record shares)."""
    return {"metric": metric, "value": value, "unit": unit, "variant": variant,
            "benchmark": benchmark, "baseline": baseline, "verdict": verdict, **extra}


def emit_record(node: Any, record: dict[str, Any]) -> None:
    """Hand a record to the results plugin (user_properties travel back from xdist too)."""
    node.user_properties.append(("glu_record", record))


def _unit_of(name: str) -> str:
    for suffix, unit in (("_per_s", "tok/s"), ("_s", "s"), ("_w", "W"),
                         ("_per_token", "J/tok"), ("_per_token_net", "J/tok")):
        if name.endswith(suffix):
            return unit
    return ""


@dataclass
class PerfContext:
    """Session state of the latency/energy tests: settings, models, baselines, references."""

    settings: PerfSettings
    models: PerfModels
    baselines: PerfBaselines
    references: dict[tuple[Any, ...], float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)  # judged records, in run order
    notes: list[str] = field(default_factory=list)  # run-wide warnings (GPU shared, ...)
    energy: Any = None  # glu_prune.performance.energy.EnergyMeter when NVML has this GPU
    energy_unavailable: str = "no NVIDIA GPU/NVML"

    def finish(self, row: Row, built: PerfModel | PerfVariant, benchmark: Any,
               node: Any) -> dict[str, Any]:
        """Judge ``row`` (speedup vs the unpruned model, efficiency vs ideal, baseline
        verdict), fill ``benchmark.extra_info`` and emit one record per number.

        The speedup is the paired one when the row has it; ``speedup_separate`` is the
        ratio to the unpruned model's own test, measured apart (kept to show the
        difference). Returns the judged record.
        """
        v = built.variant if isinstance(built, PerfModel) else built
        separate = self._separate_speedup(v, row)
        speed = row.paired.fields() if row.paired is not None else {
            "speedup": separate, "speedup_paired": False}
        efficiency = (speed["speedup"] / row.ideal_speedup
                      if speed["speedup"] and row.ideal_speedup else None)
        baseline, verdict = self.baselines.check(v.key, row.benchmark, row.metric, row.value,
                                                 row.unit, higher_is_better=row.higher_is_better)
        context = self._context(built, row, node)
        record = make_record(variant=v.slug, benchmark=row.benchmark, metric=row.metric,
                             value=row.value, unit=row.unit, baseline=baseline, verdict=verdict,
                             direction="higher" if row.higher_is_better else "lower",
                             **row.spread, **speed, speedup_separate=separate,
                             ideal_speedup=row.ideal_speedup, efficiency=efficiency,
                             notes="; ".join(self.notes) or None, **context)
        # The judged record and the side numbers, so --benchmark-json alone can rebuild tables.
        benchmark.extra_info.update({**record, "extra": dict(row.extra)})
        emit_record(node, record)
        self.records.append(record)
        for name, value in row.extra.items():
            unit = _unit_of(name)  # side numbers with a unit: shown, not judged
            if unit and isinstance(value, (int, float)) and not isinstance(value, bool):
                emit_record(node, make_record(
                    variant=v.slug, benchmark=row.benchmark, metric=name, value=value,
                    unit=unit, direction="higher" if unit.endswith("/s") else "lower",
                    **context))
        return record

    def _separate_speedup(self, v: PerfVariant, row: Row) -> float | None:
        """Speedup over the unpruned model's own test earlier in this run (measured apart:
        the way it was done before rounds were paired)."""
        key = (v.reference_group, row.benchmark, row.metric)
        if v.is_reference:
            self.references[key] = row.value
        ref = self.references.get(key)
        if ref is None or ref <= 0 or row.value <= 0:
            return None
        return row.value / ref if row.higher_is_better else ref / row.value

    def _context(self, built: PerfModel | PerfVariant, row: Row, node: Any) -> dict[str, Any]:
        """What every record of this row shares: identity and the conditions it was
        measured under (depth of the full depth, dtype, device, threads, weights,
        prompt length, batch)."""
        v = built.variant if isinstance(built, PerfModel) else built
        context = {"model": v.model, "pct": v.pct, "round_to": v.round_to, "layers": v.layers,
                   "full_layers": v.full_layers, "reduced_depth": v.layers < v.full_layers,
                   "dtype": self.settings.dtype, "device": self.baselines.device.name,
                   "key": v.key,
                   "kind": "energy" if row.benchmark.startswith("energy") else "latency",
                   "threads": None if self.settings.on_gpu else torch.get_num_threads(),
                   "test": getattr(node, "nodeid", None), **row.conditions}
        if isinstance(built, PerfModel):
            context.update(weights=built.weights,
                           intermediate_size=built.report.intermediate_size_after)
        return context

    def find(self, variant: PerfVariant, benchmark: str) -> dict[str, Any] | None:
        """The judged record of ``variant`` on ``benchmark`` from earlier in this run."""
        return next((r for r in self.records if r["key"] == variant.key
                     and r["benchmark"] == benchmark), None)

    def failure(self, record: dict[str, Any]) -> str | None:
        """Why this judged record fails its test (regression, or freshly pinned), else None."""
        b = self.baselines
        where = f"{b.path} (device {b.device.name}, {b.device.dtype})"
        head = (f"{record['variant']} {record['benchmark']} {record['metric']} = "
                f"{record['value']:.6g} {record['unit']}")
        if record["verdict"] == "regression":
            return (f"{head} regressed beyond {b.tolerance:.0%} of its baseline "
                    f"{record['baseline']:.6g} in {where}; if the change is expected, re-pin "
                    f"with --glu-update-baselines and review the diff")
        if record["verdict"] == "pinned":
            old = "none" if record["baseline"] is None else f"{record['baseline']:.6g}"
            return (f"baseline pinned (--glu-update-baselines): {head} (was {old}) in {where}; "
                    f"review the diff (git diff) and rerun without the flag")
        return None


# ---------------------------------------------------------------- tables


TABLE_COLUMNS = ("variant", "layers", "weights", "benchmark", "metric", "value", "unit",
                 "q1", "q3", "rounds", "outliers", "speedup", "speedup_low", "speedup_high",
                 "ideal_speedup", "efficiency", "baseline", "verdict")


def _cell(x: Any) -> Any:
    return f"{x:.4g}" if isinstance(x, float) else ("" if x is None else x)


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """Judged perf records as a GitHub markdown table (spread, speedup and its interval)."""
    from tabulate import tabulate

    rows = [[_cell(r.get(c)) for c in TABLE_COLUMNS] for r in records]
    return tabulate(rows, headers=list(TABLE_COLUMNS), tablefmt="github")


def records_from_benchmark_json(path: str | Path) -> list[dict[str, Any]]:
    """The judged records kept in a ``--benchmark-json`` file's ``extra_info``."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [b["extra_info"] for b in data.get("benchmarks", [])
            if "metric" in b.get("extra_info", {})]


def summary_lines(ctx: PerfContext) -> list[str]:
    """The terminal summary: device, baseline state, run notes, and the table."""
    b, s = ctx.baselines, ctx.settings
    weights = sorted({r["weights"] for r in ctx.records if r.get("weights")})
    lines = [f"device: {b.device.name} (driver {b.device.driver}), {s.dtype}; "
             f"weights: {', '.join(weights) or 'n/a'} (speed does not depend on weight values)"]
    if b.pinned:
        lines.append(f"pinned {b.pinned} value(s) into {b.path}: review the diff")
    elif b.data is None:
        lines.append(f"{b.reason} ({b.device.name}, {s.dtype}): numbers recorded, not "
                     f"compared; pin them with --glu-update-baselines")
    else:
        lines.append(f"compared with {b.path} (tolerance {b.tolerance:.0%})")
    lines.append(f"speedup: median of paired rounds (unpruned and pruned alternating), "
                 f"{CONFIDENCE:.0%} interval of the median in speedup_low..speedup_high")
    lines += [f"note: {n}" for n in ctx.notes]
    return lines + markdown_table(ctx.records).splitlines()
