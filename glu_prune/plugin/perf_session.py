"""Session state of the latency/energy tests: judging rows against the device
baselines, their records, and the terminal summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from tabulate import tabulate

from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import expansion_table
from glu_prune.core.matching import depth_param_count, width_param_count
from glu_prune.evaluation import MetricValue
from glu_prune.judging import UPDATE_FLAG, Check, SpeedBaselines, Subject, Verdict, judge
from glu_prune.performance.models import PerfModel, PerfModels
from glu_prune.performance.settings import CONFIDENCE, PerfSettings, PerfVariant
from glu_prune.performance.stats import Row
from glu_prune.plugin.records import emit
from glu_prune.plugin.unmeasured import REQUIRE_FLAG
from glu_prune.results import Record

# keys of the judged row that are Record fields (the rest of the row goes to ``extra``)
_FIELDS = {"metric", "value", "unit", "variant", "benchmark", "baseline", "verdict", "direction",
           "model", "pct", "round_to", "kind", "test", "intermediate_size"}


def _unit_of(name: str) -> str:
    for suffix, unit in (("_per_s", "tok/s"), ("_s", "s"), ("_w", "W"),
                         ("_per_token", "J/tok"), ("_per_token_net", "J/tok")):
        if name.endswith(suffix):
            return unit
    return ""


def _shape(v: PerfVariant) -> dict[str, Any]:
    """Kept size, expansion ratio and parameters of a lone MLP block's model shape at its
    level, from the config arithmetic (no model was built)."""
    try:
        config = make_config(v.model)  # the family's config class: exact parameter counts
    except (KeyError, ValueError):
        return {}
    row = expansion_table(config, [float(v.pct)], round_to=v.round_to)[0]
    return {"intermediate_size": row["intermediate_size"],
            "expansion_ratio": row["expansion_ratio"], "params": row["total_params"]}


def _full_params(v: PerfVariant) -> dict[str, Any]:
    """The parameters of the variant's whole model (every layer, however many ran), from
    the config arithmetic: what the equal-parameter comparison matches shapes by."""
    try:
        config = make_config(v.model)
    except (KeyError, ValueError):
        return {}
    if v.shape == "depth":
        return {"params": depth_param_count(config, v.removed)}
    return {"params": width_param_count(config, v.pct, v.round_to)}


def _record(v: PerfVariant, judged: dict[str, Any], verdict: Verdict | None,
            shape: dict[str, Any]) -> Record:
    """The results record of a judged row or a side number (``judged`` is its flat dict)."""
    extra = {k: x for k, x in judged.items() if k not in _FIELDS and k != "ideal_speedup"}
    fields = {"intermediate_size": judged.get("intermediate_size"), **shape}
    if verdict is not None:  # speed records carry no bound (the tolerance is run-wide)
        verdict = replace(verdict, bound=None)
    return Record.of(v.id, judged["benchmark"], judged["metric"], judged["value"],
                     kind=judged["kind"], verdict=verdict, extra=extra, unit=judged["unit"],
                     direction=judged["direction"], ideal=judged.get("ideal_speedup"),
                     test=judged.get("test"), **fields)


@dataclass
class PerfContext:
    """Session state of the latency/energy tests: settings, models, baselines, references."""

    settings: PerfSettings
    models: PerfModels
    baselines: SpeedBaselines
    references: dict[tuple[Any, ...], float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)  # judged records, in run order
    notes: list[str] = field(default_factory=list)  # run-wide warnings (GPU shared, ...)
    energy: Any = None  # glu_prune.performance.energy.EnergyMeter when NVML has this GPU
    energy_unavailable: str = "no NVIDIA GPU/NVML"
    verdicts: dict[tuple[str, str, str], Verdict] = field(default_factory=dict)
    mismatches: dict[tuple[str, str, str], str] = field(default_factory=dict)
    require_baselines: bool = False  # no baseline: a failure, not a skip

    def finish(self, row: Row, built: PerfModel | PerfVariant, benchmark: Any,
               node: Any) -> dict[str, Any]:
        """Judge ``row`` (speedup vs the unpruned model, efficiency vs ideal, baseline
        verdict), fill ``benchmark.extra_info`` and emit one record per number.

        The speedup is the paired one when the row has it; ``speedup_separate`` is the
        ratio to the unpruned model's own test, measured apart (kept to show the
        difference). Returns the judged row as a flat dict.
        """
        v = built.variant if isinstance(built, PerfModel) else built
        verdict = self._verdict(v, row)
        judged = self._judged(v, row, built, verdict, node)
        # The judged row and the side numbers, so --benchmark-json alone can rebuild tables.
        benchmark.extra_info.update({**judged, "extra": dict(row.extra)})
        shape = _full_params(v) if isinstance(built, PerfModel) else _shape(v)
        records = [_record(v, judged, verdict, shape)]
        context = self._context(built, row, node)
        for name, value in row.extra.items():
            unit = _unit_of(name)  # side numbers with a unit: shown, not judged
            if unit and isinstance(value, (int, float)) and not isinstance(value, bool):
                side = {"metric": name, "value": value, "unit": unit, "variant": v.slug,
                        "benchmark": row.benchmark, "baseline": None, "verdict": None,
                        "direction": "higher" if unit.endswith("/s") else "lower", **context}
                records.append(_record(v, side, None, shape))
        emit(node, *records)
        self.records.append(judged)
        self.verdicts[(v.key, row.benchmark, row.metric)] = verdict
        return judged

    def _verdict(self, v: PerfVariant, row: Row) -> Verdict:
        """The row's verdict against this device's baselines (pinned, with the update flag).
        A baseline measured under other conditions is not compared: the verdict is "no
        baseline" and ``mismatches`` holds the line the test fails with."""
        direction = "higher" if row.higher_is_better else "lower"
        kind = "energy" if row.benchmark.startswith("energy") else "latency"
        subject = Subject(v.model, v.key, row.benchmark, row.metric)
        check = Check(subject, MetricValue(float(row.value), None, None), kind, direction,
                      row.unit)
        b, conditions = self.baselines, self.conditions(v, row)
        mismatch = "" if b.update else b.conditions_mismatch(subject, conditions)
        if mismatch:
            self.mismatches[(v.key, row.benchmark, row.metric)] = mismatch
            return Verdict(subject, "no baseline", check.run, source=b.source, kind=kind,
                           unit=row.unit, detail="baseline measured under other conditions")
        return judge([check], b, b.tolerance, update=b.update, settings=conditions,
                     source=b.source)[0]

    def conditions(self, v: PerfVariant, row: Row) -> dict[str, Any]:
        """Every condition that changes ``row``'s number: the row's own (prompt length,
        batch, ...), the run's (new tokens, decode prompt length, threads, dtype, depth,
        placement over devices) and the software and device (torch, CUDA, device, driver)."""
        s, device = self.settings, self.baselines.device
        run = {"new_tokens": s.new_tokens, "decode_prompt_len": s.decode_prompt_len,
               "batch": s.batch, "threads": torch.get_num_threads(), "dtype": s.dtype,
               "layers": v.layers, "torch": torch.__version__, "cuda": torch.version.cuda,
               "device": device.name, "driver": device.driver}
        if s.placement is not None:  # spread over devices: never compared with one device's
            run["placement"] = s.placement.label
        own = {k: x for k, x in row.conditions.items()
               if x is None or isinstance(x, (str, int, float, bool))}
        return {**run, **own}

    def _judged(self, v: PerfVariant, row: Row, built: PerfModel | PerfVariant,
                verdict: Verdict, node: Any) -> dict[str, Any]:
        """The flat judged row (``benchmark.extra_info``, the latency tests' ``record``)."""
        separate = self._separate_speedup(v, row)
        speed = row.paired.fields(row.scale) if row.paired is not None else {
            "speedup": separate, "speedup_paired": False}
        efficiency = (speed["speedup"] / row.ideal_speedup
                      if speed["speedup"] and row.ideal_speedup else None)
        shown = verdict.detail if verdict.outcome == "no baseline" else verdict.outcome
        return {"metric": row.metric, "value": row.value, "unit": row.unit, "variant": v.slug,
                "benchmark": row.benchmark, "baseline": verdict.baseline, "verdict": shown,
                "direction": "higher" if row.higher_is_better else "lower",
                **row.spread, **speed, "speedup_separate": separate,
                "ideal_speedup": row.ideal_speedup, "efficiency": efficiency,
                "notes": "; ".join(self.notes) or None, **self._context(built, row, node)}

    def _separate_speedup(self, v: PerfVariant, row: Row) -> float | None:
        """Speedup over the unpruned model's own test earlier in this run (measured apart:
        the way it was done before rounds were paired)."""
        key = (v.level_zero_group, row.benchmark, row.metric)
        if v.is_level_zero:
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
        if self.settings.placement is not None:
            context["placement"] = self.settings.placement.label
        if isinstance(built, PerfModel):
            context.update(weights=built.weights,
                           intermediate_size=built.report.intermediate_size_after)
        return context

    def find(self, variant: PerfVariant, benchmark: str) -> dict[str, Any] | None:
        """The judged record of ``variant`` on ``benchmark`` from earlier in this run."""
        return next((r for r in self.records if r["key"] == variant.key
                     and r["benchmark"] == benchmark), None)

    def failure(self, judged: dict[str, Any]) -> str | None:
        """The verdict's message when this judged row fails its test (a regression, or
        freshly pinned), else None."""
        key = (judged["key"], judged["benchmark"], judged["metric"])
        if key in self.mismatches:
            return self.mismatches[key]
        verdict = self.verdicts.get(key)
        if self.require_baselines and self._absent(key):
            return f"{self._absent(key)} [{REQUIRE_FLAG}: measuring nothing is a failure]"
        return verdict.message() if verdict is not None and verdict.failed else None

    def absent(self, judged: dict[str, Any]) -> str | None:
        """Why this judged row has no baseline to be compared with (the test skips), else
        None (compared, pinned, failing on other conditions, or failing because
        ``--glu-require-baselines`` requires one)."""
        key = (judged["key"], judged["benchmark"], judged["metric"])
        return None if self.require_baselines else self._absent(key)

    def _absent(self, key: tuple[str, str, str]) -> str | None:
        verdict = self.verdicts.get(key)
        if key in self.mismatches or verdict is None or verdict.outcome != "no baseline":
            return None
        return (f"{verdict.detail} ({verdict.source}): measured, not compared; pin with "
                f"{UPDATE_FLAG}")


# ---------------------------------------------------------------- tables


TABLE_COLUMNS = ("variant", "layers", "weights", "benchmark", "metric", "value", "unit",
                 "q1", "q3", "rounds", "outliers", "speedup", "speedup_low", "speedup_high",
                 "ideal_speedup", "efficiency", "baseline", "verdict")


def _cell(x: Any) -> Any:
    return f"{x:.4g}" if isinstance(x, float) else ("" if x is None else x)


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """Judged perf records as a GitHub markdown table (spread, speedup and its interval)."""
    rows = [[_cell(r.get(c)) for c in TABLE_COLUMNS] for r in records]
    return tabulate(rows, headers=list(TABLE_COLUMNS), tablefmt="github")


def records_from_benchmark_json(path: str | Path) -> list[dict[str, Any]]:
    """The judged records kept in a ``--benchmark-json`` file's ``extra_info``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [b["extra_info"] for b in data.get("benchmarks", [])
            if "metric" in b.get("extra_info", {})]


def summary_lines(ctx: PerfContext) -> list[str]:
    """The terminal summary: device, baseline state, run notes, and the table."""
    b, s = ctx.baselines, ctx.settings
    weights = sorted({r["weights"] for r in ctx.records if r.get("weights")})
    lines = [f"device: {b.device.name} (driver {b.device.driver}), {s.dtype}; "
             f"weights: {', '.join(weights) or 'n/a'} (speed does not depend on weight values)"]
    if s.placement is not None:
        lines.append(f"placement: {s.placement.label} (accelerate device map; energy summed "
                     f"over its GPUs)")
    if b.pinned:
        lines.append(f"pinned {b.pinned} value(s) into {b.path}: review the diff")
    elif b.data is None:
        lines.append(f"{b.reason} ({b.device.name}, {s.dtype}): numbers recorded, not "
                     f"compared; pin them with --glu-update-baselines")
    else:
        lines.append(f"compared with {b.path} (tolerance {b.tolerance.speed_rel:.0%})")
    lines.append(f"speedup: median of paired rounds (unpruned and pruned alternating), "
                 f"{CONFIDENCE:.0%} interval of the median in speedup_low..speedup_high")
    lines += [f"note: {n}" for n in ctx.notes]
    return lines + markdown_table(ctx.records).splitlines()
