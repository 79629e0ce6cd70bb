"""The tables of results.md per model: runs, architecture, capabilities, groups, methods."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from glu_prune.results.analysis import (VariantKey, by_variant, level_zero_records, split_primary,
                                        at_chance, chance_label, columns_of, group_half_widths,
                                        group_means,
                                        several_methods, variant_key)
from glu_prune.results.format import ARROWS, MARKS, Table, fmt_change, fmt_value, level_label
from glu_prune.results.lookup import architecture, chance_level, sort_records
from glu_prune.results.record import QUALITY_KINDS, Record
from glu_prune.results.runs import failed_run, run_of


def _command(run: dict[str, Any]) -> str:
    """The pytest command line of a run (``-`` when it is not known)."""
    args = run.get("args")
    if not args:
        return "-"
    source = f" from {run['source']}" if run.get("source") else ""
    return f"`pytest {' '.join(map(str, args))}`".replace("`pytest `", "`pytest`") + source


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


@dataclass
class Runs:
    """The runs behind a set of records: labels (r1 = oldest), ages, and cell marks."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runs = sorted(self.runs, key=lambda run: str(run.get("started") or ""))
        self.labels = {run.get("id"): f"r{i}" for i, run in enumerate(self.runs, 1)}

    @property
    def newest(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    def age(self, run: dict[str, Any]) -> str | None:
        """How long before the newest run's end ``run`` ended (None for the newest)."""
        end, last = _time(run.get("finished")), _time((self.newest or {}).get("finished"))
        if run is self.newest or end is None or last is None:
            return None
        return _age(max((last - end).total_seconds(), 0.0))

    def mark(self, r: Record) -> str:
        """`` [r1, 2 d]`` for records of an earlier run, ``incomplete`` for records of a run
        that stopped early; nothing when every record comes from one complete run."""
        run = next((x for x in self.runs if x.get("id") == run_of(r)), None)
        if run is None or len(self.runs) == 1:  # one run: the banner says all there is
            return ""
        parts = [self.labels[run.get("id")]]
        if run is not self.newest:
            parts.append(self.age(run) or "earlier")
        if not run.get("complete", True):
            parts.append("incomplete")
        return f" [{', '.join(parts)}]" if len(parts) > 1 else ""

    def table(self) -> Table:
        """One row per run: label, start, age, tests, completeness, command."""
        rows = []
        for run in self.runs:
            tests = run.get("tests") or {}
            done = "yes" if run.get("complete", True) else f"no: {run.get('stopped') or 'stopped'}"
            if failed_run(run):
                done = f"FAILED: all {tests.get('ran')} tests failed or errored"
            rows.append([self.labels[run.get("id")], str(run.get("started") or "?"),
                         self.age(run) or "newest",
                         f"{tests.get('ran', '?')} of {tests.get('selected', '?')}"
                         if tests else "-", done, _command(run)])
        return ["run", "started (UTC)", "age", "tests ran", "complete", "command"], rows


NO_RUNS = Runs()


def metric_label(metric: str) -> str:
    """``acc_norm,none`` -> ``acc_norm``; ``exact_match,strict-match`` -> ``strict-match``."""
    name, _, filt = metric.partition(",")
    return name if filt in ("", "none") else filt


def _quality_header(model: str, bench: str, metric: str, direction: str | None) -> str:
    """``mmlu acc ↑ (chance 0.25)``: benchmark, metric, direction, chance level."""
    text = f"{bench} {metric_label(metric)} {ARROWS.get(direction or '', '')}".rstrip()
    chance = chance_level(model, bench, metric)
    return text + (f" (chance {chance:.2g})" if chance is not None else "")


def row_label(key: VariantKey, several: bool) -> str:
    return level_label(key[0], key[2], key[1], several)


def architecture_table(model: str, records: Sequence[Record]) -> Table:
    """Level, pruning %, expansion ratio, intermediate size, params (M), % params removed."""
    headers = ["level", "pruned %", "expansion", "intermediate", "params (M)", "params removed %"]
    rows, seen = [], set()
    for r in sorted(sort_records(records), key=lambda r: (variant_key(r)[0], r.round_to)):
        if r.pct is None or (r.pct, r.round_to) in seen:
            continue
        seen.add((r.pct, r.round_to))
        arch = architecture(model, r.pct, r.round_to)
        if arch is not None:
            row = [level_label(r.pct, r.round_to), f"{arch['pruned_pct']:.1f}",
                   f"{arch['expansion_ratio']:.3f}", str(arch["intermediate_size"]),
                   f"{arch['total_params'] / 1e6:.2f}", f"{arch['params_removed_pct']:.2f}"]
        else:  # a model the registry does not know: what the records say
            ratio = f"{r.expansion_ratio:.3f}" if r.expansion_ratio else "-"
            row = [level_label(r.pct, r.round_to), f"{r.pct:g}", ratio,
                   str(r.intermediate_size or "-"),
                   f"{r.params / 1e6:.2f}" if r.params else "-", "-"]
        rows.append(row)
    return headers, rows


def _cell(r: Record | None, ref: Record | None, runs: Runs = NO_RUNS) -> str:
    """Value, change vs level 0 (or ``~`` vs baseline) with ▼/▲, chance, verdict, and the
    run it comes from (``runs``; NO_RUNS when the row's label says it)."""
    if r is None:
        return "-"
    text = fmt_value(r)
    chance = chance_label(r)  # None unless the value is at (or below) chance
    if r.pct == 0 or (chance and (ref is None or at_chance(ref))):
        pass  # the reference itself, or noise at chance on both sides
    elif ref is not None:
        text += f" ({fmt_change(r, ref.value)})"
    elif r.baseline is not None:
        text += f" (~{fmt_change(r, r.baseline)})"
    if chance:
        text += f" {chance}"
    return text + MARKS.get(r.verdict or "", "") + runs.mark(r)


def capability_table(records: Sequence[Record], primary: bool = True,
                     runs: Runs = NO_RUNS) -> Table:
    """One row per level, one column per benchmark (its first metric in registry order;
    ``primary=False``: the other metrics); cell = value, change and marks."""
    recs = [r for r in records if r.kind in QUALITY_KINDS]
    cols = split_primary(columns_of(recs))[0 if primary else 1] if recs else []
    if not cols:
        return [], []
    refs, several = level_zero_records(recs), several_methods(recs)
    directions = {(r.benchmark, r.metric): r.direction for r in recs}
    rows = []
    for key, cells in by_variant(recs).items():
        shown = [cells[c] for c in cols if c in cells]
        marks = {runs.mark(r) for r in shown}
        one_run = len(marks) == 1  # a row from one run names it once, in its label
        label = row_label(key, several) + (marks.pop() if one_run else "")
        rows.append([label] + [_cell(cells.get(c), refs.get(c), NO_RUNS if one_run else runs)
                               for c in cols])
    model = recs[0].model
    return ["level"] + [_quality_header(model, b, m, directions.get((b, m)))
                        for b, m in cols], rows


def other_metrics_table(records: Sequence[Record], runs: Runs = NO_RUNS) -> Table:
    """The benchmarks' further metrics (arc_challenge acc, gsm8k flexible-extract, ...)."""
    return capability_table(records, primary=False, runs=runs)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def group_table(records: Sequence[Record], runs: Runs = NO_RUNS) -> Table:
    """Mean relative change of the fragile and the robust group, per level."""
    means, several = group_means(records), several_methods(records)
    if not means:
        return [], []
    regs = defaultdict(int)
    for r in records:
        if r.kind in QUALITY_KINDS and r.verdict == "regression":
            regs[variant_key(r)] += 1
    halves = group_half_widths(records)

    def cell(k: Any, g: str) -> str:
        half = halves.get(k, {}).get(g)
        mean = means[k].get(g)
        return _pct(mean) + (f" ±{100 * half:.1f}" if half is not None and mean is not None
                             else "")
    rows = [[row_label(k, several), cell(k, "fragile"), cell(k, "robust"), cell(k, "all"),
             str(regs[k])] for k in means]
    return ["level", "fragile ↑", "robust ↑", "all ↑", "regressions"], rows


def method_table(records: Sequence[Record], runs: Runs = NO_RUNS) -> Table:
    """Per level, each method's fragile / robust mean change (when several methods ran)."""
    if not several_methods(records):
        return [], []
    means = group_means(records)
    methods = sorted({k[1] for k in means})
    levels = sorted({(k[0], k[2]) for k in means})
    rows = []
    for pct, rt in levels:
        row = [level_label(pct, rt)]
        for m in methods:
            g = means.get((pct, m, rt), {})
            row.append(f"{_pct(g.get('fragile'))} / {_pct(g.get('robust'))}" if g else "-")
        rows.append(row)
    return ["level"] + [f"{m} (fragile / robust)" for m in methods], rows


SECTIONS: tuple[tuple[str, Callable[..., Table]], ...] = (
    ("Capabilities", capability_table),
    ("Capabilities: further metrics", other_metrics_table),
    ("Groups: mean relative change vs level 0", group_table),
    ("Methods: mean relative change, fragile / robust", method_table),
)
