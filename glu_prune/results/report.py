"""The results tables: markdown (tabulate) per model, the terminal summary, and writing files.

Showing only: verdicts (ok / regression / improvement) are computed by the judging code
(``baselines``, ``perf_baselines``) and speedups with their intervals by the measuring
code (``perf``); they are merely displayed here. Never imports pytest, so
``python -m glu_prune report merge`` and the plugin share this code. The record schema,
JSON, accumulation and merging live in ``glu_prune.results.record_io``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tabulate import tabulate

from glu_prune.results.record_io import (CAPABILITY_KINDS, RECORD_KEYS, Record, accumulate,
                                         architecture, benchmark_key, chance_level, dedupe,
                                         document, header_line, load_document, metric_key,
                                         model_index, new_run_id, parse_slug, registry_size,
                                         run_of, sort_records, stamp, write_json,
                                         write_text_atomically)

LOG = logging.getLogger(__name__)

__all__ = ["Record", "Recorder", "markdown", "terminal_summary", "write_results"]

MARKS = {"regression": " **REG**", "improvement": " *IMP*", "pinned": " (pinned)"}
WORSE, BETTER = "▼", "▲"
ARROWS = {"higher": "↑", "lower": "↓"}
CHANCE_Z = 2.0  # "at chance": within this many standard errors of a uniform guess
LEGEND = """How to read these tables:

- **Capabilities**: value (change vs level 0 of the same table: points for accuracy, % for
  perplexity). The header names the metric and its direction (↑ higher is better, ↓ lower
  is better); ▼ marks a change for the worse and ▲ one for the better in every column,
  whatever the sign. `~` = change vs the stored baseline (level 0 not in the table).
- `at chance`: within 2 standard errors of a uniform guess over the choices (the chance
  level is in the header), `below chance` under that; either way no signal, so between
  two such values no change is shown.
- **REG** = regression beyond the tolerance (that test failed), *IMP* = improvement beyond
  it, (pinned) = baseline rewritten, `-` = not measured.
- Record counts per model: *ok* = within tolerance of the stored baseline; *no baseline* =
  nothing stored to compare with (pin with `--glu-update-baselines`); *not judged* = shown
  only (side numbers such as p90 or tokens/s, and records without a verdict).
- Groups: mean of value/ref - 1 (ref/value - 1 where lower is better): negative = worse.
- `[r1, 2 d]`: the record comes from an earlier run (see *Runs*), that long before the
  newest; `incomplete` = from a run that stopped before all its selected tests ran.""".split("\n")

# ---------------------------------------------------------------- numbers


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


def _fmt_change(r: Record, ref: float) -> str:
    if r.kind == "accuracy" and abs(r.value) <= 1 and abs(ref) <= 1:
        text = f"{100 * (r.value - ref):+.1f}"  # points
    elif not ref:
        return "n/a"
    else:
        text = f"{100 * (r.value / ref - 1):+.1f}%"
    return text + _direction_mark(r, ref)


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


# ---------------------------------------------------------------- runs


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
            rows.append([self.labels[run.get("id")], str(run.get("started") or "?"),
                         self.age(run) or "newest",
                         f"{tests.get('ran', '?')} of {tests.get('selected', '?')}"
                         if tests else "-", done, _command(run)])
        return ["run", "started (UTC)", "age", "tests ran", "complete", "command"], rows


# ---------------------------------------------------------------- tables


Table = tuple[list[str], list[list[str]]]
VariantKey = tuple[float, str, int]  # (pct, method, round_to)
NO_RUNS = Runs()


def variant_key(r: Record) -> VariantKey:
    return (r.pct if r.pct is not None else -1.0, r.method or "", r.round_to)


def columns_of(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(benchmark, metric) columns in registry order."""
    model = records[0].model
    cols = {(r.benchmark, r.metric) for r in records}
    return sorted(cols, key=lambda c: (benchmark_key(model, c[0]), metric_key(model, *c)))


def metric_label(metric: str) -> str:
    """``acc_norm,none`` -> ``acc_norm``; ``exact_match,strict-match`` -> ``strict-match``."""
    name, _, filt = metric.partition(",")
    return name if filt in ("", "none") else filt


def _quality_header(model: str, bench: str, metric: str, direction: str | None) -> str:
    """``mmlu acc ↑ (chance 0.25)``: benchmark, metric, direction, chance level."""
    text = f"{bench} {metric_label(metric)} {ARROWS.get(direction or '', '')}".rstrip()
    chance = chance_level(model, bench, metric)
    return text + (f" (chance {chance:.2g})" if chance is not None else "")


def _split_primary(cols: list[tuple[str, str]]) -> tuple[list, list]:
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


def _reference(records: Sequence[Record]) -> dict[tuple[str, str], Record]:
    """Level-0 record per (benchmark, metric): what every change is measured against."""
    return {(r.benchmark, r.metric): r for r in records if r.pct == 0}


def _by_variant(records: Sequence[Record]) -> dict[VariantKey, dict[tuple[str, str], Record]]:
    rows: dict[VariantKey, dict[tuple[str, str], Record]] = {}
    for r in sort_records(records):
        rows.setdefault(variant_key(r), {})[(r.benchmark, r.metric)] = r
    return rows


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
    chance = at_chance(r)
    if r.pct == 0 or (chance and (ref is None or at_chance(ref))):
        pass  # the reference itself, or noise at chance on both sides
    elif ref is not None:
        text += f" ({_fmt_change(r, ref.value)})"
    elif r.baseline is not None:
        text += f" (~{_fmt_change(r, r.baseline)})"
    if chance:
        text += f" {chance_label(r)}"
    return text + MARKS.get(r.verdict or "", "") + runs.mark(r)


def capability_table(records: Sequence[Record], primary: bool = True,
                     runs: Runs = NO_RUNS) -> Table:
    """One row per level, one column per benchmark (its first metric in registry order;
    ``primary=False``: the other metrics); cell = value, change and marks."""
    recs = [r for r in records if r.kind in CAPABILITY_KINDS]
    cols = _split_primary(columns_of(recs))[0 if primary else 1] if recs else []
    if not cols:
        return [], []
    refs, several = _reference(recs), several_methods(recs)
    directions = {(r.benchmark, r.metric): r.direction for r in recs}
    rows = []
    for key, cells in _by_variant(recs).items():
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


def chance_benchmarks(records: Sequence[Record]) -> list[str]:
    """Benchmarks whose main metric is at chance at level 0: their changes are noise."""
    recs = [r for r in records if r.kind in CAPABILITY_KINDS]
    if not recs:
        return []
    refs = _reference(recs)
    main = _split_primary(columns_of(recs))[0]
    return [b for b, m in main if at_chance(refs.get((b, m)))]


def benchmark_changes(records: Sequence[Record]) -> dict[VariantKey, dict[str, float]]:
    """Per variant: benchmark -> mean quality change over its metrics (vs level 0, else
    vs baseline). Level 0 itself is left out, and so are benchmarks at chance at level 0."""
    recs = [r for r in records if r.kind in CAPABILITY_KINDS]
    refs, noise = _reference(recs), set(chance_benchmarks(recs)) if recs else set()
    out: dict[VariantKey, dict[str, list[float]]] = {}
    for r in recs:
        if not r.pct or r.benchmark in noise:
            continue
        ref = refs.get((r.benchmark, r.metric))
        ref_value = ref.value if ref is not None else r.baseline
        change = quality_change(r.value, ref_value, r.direction) if ref_value else None
        if change is not None:
            out.setdefault(variant_key(r), {}).setdefault(r.benchmark, []).append(change)
    return {k: {b: sum(v) / len(v) for b, v in d.items()} for k, d in out.items()}


def group_means(records: Sequence[Record]) -> dict[VariantKey, dict[str, float]]:
    """Per variant: group ("fragile", "robust", "all") -> mean relative change."""
    groups = {r.benchmark: r.group for r in records if r.group}
    out = {}
    for key, changes in benchmark_changes(records).items():
        means = {}
        for g in ("fragile", "robust", None):
            vals = [c for b, c in changes.items() if g is None or groups.get(b) == g]
            if vals:
                means[g or "all"] = sum(vals) / len(vals)
        out[key] = means
    return dict(sorted(out.items()))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def group_table(records: Sequence[Record], runs: Runs = NO_RUNS) -> Table:
    """Mean relative change of the fragile and the robust group, per level."""
    means, several = group_means(records), several_methods(records)
    if not means:
        return [], []
    regs = defaultdict(int)
    for r in records:
        if r.kind in CAPABILITY_KINDS and r.verdict == "regression":
            regs[variant_key(r)] += 1
    rows = [[row_label(k, several), _pct(m.get("fragile")), _pct(m.get("robust")),
             _pct(m.get("all")), str(regs[k])] for k, m in means.items()]
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


# ---------------------------------------------------------------- markdown


def render(table: Table, fmt: str = "github") -> str:
    headers, rows = table
    # cells are pre-formatted strings: no re-parsing, so two runs print identically
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


SECTIONS: tuple[tuple[str, Callable[..., Table]], ...] = (
    ("Capabilities", capability_table),
    ("Capabilities: further metrics", other_metrics_table),
    ("Groups: mean relative change vs level 0", group_table),
    ("Methods: mean relative change, fragile / robust", method_table),
)


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


def incomplete_banner(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per run that stopped before all its selected tests ran (empty when all
    are complete): results.md opens with these, so a partial run never passes for a
    whole one."""
    labels = Runs(list(runs)).labels if len(runs) > 1 else {}
    lines = []
    for run in runs:
        if run.get("complete", True):
            continue
        tests = run.get("tests") or {}
        label = labels.get(run.get("id"))
        source = " ".join(filter(None, (label, f"({run['source']})" if run.get("source")
                                        else None)))
        lines.append(f"**INCOMPLETE RUN{' ' + source if source else ''}: "
                     f"{run.get('stopped') or 'stopped early'} after {tests.get('ran', '?')} "
                     f"of {tests.get('selected', '?')} selected tests.** Its records hold only "
                     f"what ran" + (f" (marked `{label}, incomplete`)" if label else "")
                     + "; rerunning its selection into this folder completes them.")
    return lines


COUNT_WORDS = {"ok": "ok (within tolerance)", "not judged": "not judged (shown only)",
               "no baseline": "no baseline (nothing stored to compare with)"}


def count_line(records: Sequence[Record]) -> str:
    """``152 records: 119 ok (within tolerance), ...``: every verdict named in words."""
    counts = defaultdict(int)
    for r in records:
        counts[r.verdict or "not judged"] += 1
    parts = [f"{n} {COUNT_WORDS.get(v, v)}" for v, n in sorted(counts.items())]
    return f"{len(records)} records: {', '.join(parts)}."


def _generic_reason(skip: dict[str, Any]) -> str:
    """A skip's reason with its own variant and benchmark named generically, so the same
    cause over many tests reads as one line."""
    reason = str(skip.get("reason") or "skipped")
    if skip.get("variant"):
        reason = reason.replace(str(skip["variant"]), "<variant>")
    if skip.get("benchmark"):
        reason = re.sub(rf"(?<![\w/.-]){re.escape(str(skip['benchmark']))}(?![\w.-])",
                        "<benchmark>", reason)
    return reason


def not_run_lines(model: str, records: Sequence[Record], runs: Sequence[dict[str, Any]]
                  ) -> list[str]:
    """One line per reason selected tests of ``model`` did not run (skips whose variant
    and benchmark have no record, e.g. weights or baselines missing): how many tests,
    which benchmarks at which levels, and the reason."""
    measured = {(r.variant, r.benchmark.split("@")[0]) for r in records}
    groups: dict[str, dict[str, set]] = {}
    for skip in (s for run in runs for s in run.get("skipped") or []):
        bench = str(skip.get("benchmark", ""))
        if skip.get("model") != model or (skip.get("variant"), bench.split("@")[0]) in measured:
            continue
        group = groups.setdefault(_generic_reason(skip), defaultdict(set))
        group["tests"].add(skip.get("test") or "?")
        group["benchmarks"].add(bench)
        parsed = parse_slug(str(skip.get("variant") or ""))
        if parsed:
            group["levels"].add((parsed["pct"], parsed["round_to"]))
    lines = []
    for reason, g in sorted(groups.items()):
        n = len(g["tests"])
        benches = ", ".join(sorted(g["benchmarks"], key=lambda b: benchmark_key(model, b)))
        levels = ", ".join(level_label(p, r) for p, r in sorted(g["levels"]))
        where = f"{benches} at {levels}" if levels else benches
        lines.append(f"Not run ({n} test{'s' if n > 1 else ''}: {where}): {reason}")
    return lines


def _unmeasured_models(records: Sequence[Record], runs: Sequence[dict[str, Any]]
                       ) -> list[str]:
    """Models a run selected that have no record here, in registry order."""
    have = {r.model for r in records}
    selected = {m for run in runs for m in run.get("models") or []}
    return sorted(selected - have, key=lambda m: (model_index(m), m))


def _model_section(model: str, recs: Sequence[Record], runs: Runs,
                   architectures: dict[str, str]) -> list[str]:
    lines = [f"## {model}", "", count_line(recs), ""]
    skipped = not_run_lines(model, recs, runs.runs)
    lines += [f"- {line}" for line in skipped] + ([""] if skipped else [])
    arch = render(architecture_table(model, recs))
    same = architectures.get(arch)
    lines += ["### Architecture", "",
              f"Same levels and architecture as {same} (above)." if same else arch, ""]
    architectures.setdefault(arch, model)
    for title, make in SECTIONS:
        table = make(recs, runs=runs)
        if table[1]:
            lines += [f"### {title}", "", render(table), ""]
            if make is group_table and chance_benchmarks(recs):
                lines += [f"Left out of the means (at chance at level 0): "
                          f"{', '.join(chance_benchmarks(recs))}.", ""]
    from glu_prune.results.perf_tables import PERF_LEGEND, performance_tables  # builds on this module

    perf = performance_tables(recs, runs)
    if perf:
        lines += ["### Performance", "", PERF_LEGEND, ""]
        for conditions, table in perf:
            lines += [f"#### {conditions}", "", render(table), ""]
    regs = regressions(recs)
    if regs:
        lines += ["### Regressions", ""] + [f"- {line}" for line in regs] + [""]
    return lines


def _not_measured_section(model: str, runs: Runs) -> list[str]:
    skipped = not_run_lines(model, [], runs.runs)
    why = skipped or ["Not run: no test of this model was selected in the runs above "
                      "(deselected by -k / -m or the test paths)"]
    return [f"## {model}", ""] + [f"- {line}" for line in why] + [""]


def markdown(records: Sequence[Record], header: str = "", banner: Sequence[str] = (),
             runs: Sequence[dict[str, Any]] = ()) -> str:
    """The whole ``results.md``: ``banner`` lines first (incomplete runs, mixed settings),
    the runs behind the records, then per model its architecture and result tables, and
    a line per selected model that has none."""
    lines = [f"> {line}\n" for line in banner] + ["# glu-prune results", ""]
    if header:
        lines += [f"_{header}_", ""]
    info = Runs(list(runs))
    if info.runs:
        lines += ["Runs whose records are in this folder (each run replaces the records it "
                  "measures again; older records stay, marked with their run):", "",
                  render(info.table()), ""]
    lines += LEGEND + [""]
    architectures: dict[str, str] = {}
    sections = {m: _model_section(m, recs, info, architectures)
                for m, recs in by_model(records).items()}
    for model in _unmeasured_models(records, info.runs):
        sections[model] = _not_measured_section(model, info)
    for model in sorted(sections, key=lambda m: (model_index(m), m)):
        lines += sections[model]
    return "\n".join(lines).rstrip() + "\n"


def terminal_summary(records: Sequence[Record]) -> list[str]:
    """A short text version: per model the group table and the regressions."""
    out = []
    for model, recs in by_model(records).items():
        n_reg = sum(r.verdict == "regression" for r in recs)
        out.append(f"{model}: {len(recs)} records, {n_reg} regression(s)")
        table = group_table(recs)
        if table[1]:
            out += render(table, "simple").splitlines()
        out += [f"  REG {line}" for line in regressions(recs)]
    return out


def write_results(records: Sequence[Record], out_dir: str | os.PathLike,
                  runs: list[dict[str, Any]], *, plots: bool = False,
                  notes: Sequence[str] = ()) -> list[Path]:
    """Write ``results.json`` and ``results.md`` (and PNG charts with ``plots``) into
    ``out_dir``; append the markdown to ``$GITHUB_STEP_SUMMARY`` when set. Returns the paths.

    ``records`` and ``runs`` are everything the folder holds (see :func:`finish_run`).
    A run that stopped early (``complete: false``) makes results.json say
    ``"complete": false`` and results.md open with an INCOMPLETE RUN banner naming how
    many of its selected tests ran. ``notes`` are further banner lines (mixed settings of
    a merge, records dropped). Each file is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(records, header_line(runs), [*incomplete_banner(runs), *notes], runs)
    paths = [write_json(document(records, runs), out / "results.json"),
             write_text_atomically(out / "results.md", text)]
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if plots:
        from glu_prune.results.plots import write_plots

        paths += write_plots(records, out)
    LOG.info("results written to %s", out)
    return paths


def collect(raw: dict[str, list[Any]]) -> tuple[list[Record], list[str]]:
    """Records from each test's raw dicts (node id -> list) and the problems found: bad
    records (skipped) and conflicting duplicates (the first, by node id, is kept)."""
    pairs, problems = [], []
    for nodeid in sorted(raw):
        for item in raw[nodeid]:
            try:
                pairs.append((Record.from_dict({**item, "test": item.get("test") or nodeid}),
                              nodeid))
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(f"record of {nodeid} ignored: {exc}")
    records, conflicts = dedupe(pairs)
    return records, problems + [f"conflicting duplicate, first kept: {c}" for c in conflicts]


def previous_results(out_dir: Path) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """What the report folder held before this run (records, runs, notes). A file that
    cannot be read is moved aside, never silently lost."""
    path = out_dir / "results.json"
    if not path.is_file():
        return [], [], []
    try:
        records, runs = load_document(path)
    except ValueError as exc:
        aside = path.with_name(f"results.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
                               f".json")
        os.replace(path, aside)
        LOG.warning("%s", exc)
        return [], [], [f"the earlier {path.name} could not be read ({exc}); moved to "
                        f"{aside.name}, so this folder starts afresh"]
    return records, runs, []


def finish_run(raw: dict[str, list[Any]], out_dir: str | os.PathLike, run: dict[str, Any],
               *, plots: bool = False) -> tuple[list[str], str | None]:
    """End of a pytest run: add its records to the report folder and rewrite the files.

    The folder accumulates (see ``report_io.accumulate``): this run's records replace
    the earlier ones of the same measurement, the others stay, marked with their run and
    age. Nothing is written when the run neither recorded a number nor skipped a suite
    test. Returns the terminal summary lines and, when the results could not be
    written, one error line (the run must then fail; see ``glu_prune.plugin.results``).
    """
    records, problems = collect(raw)
    out = Path(out_dir)
    if not records and not run.get("skipped"):
        return problems + [f"no test recorded results: nothing written to {out_dir}"], None
    run = {**run, "id": run.get("id") or new_run_id(datetime.now(timezone.utc))}
    try:
        old_records, old_runs, notes = previous_results(out)
        all_records, runs, dropped = accumulate(old_records, old_runs,
                                                stamp(records, run["id"]), run)
        paths = write_results(all_records, out, runs, plots=plots, notes=notes + dropped)
    except (OSError, ImportError) as exc:
        error = f"ERROR writing the results to {out_dir} failed: {exc}"
        LOG.error("%s", error)
        return terminal_summary(records) + problems + [error], error
    kept = len(all_records) - len(records)
    written = [f"written: {', '.join(map(str, paths))}"
               + (f" ({kept} record(s) of earlier runs kept)" if kept else "")]
    banner = [line.replace("**", "") for line in incomplete_banner([run]) + notes + dropped]
    return terminal_summary(records) + problems + banner + written, None


@dataclass
class Recorder:
    """The ``glu_record`` fixture: ``glu_record(benchmark=..., metric=..., value=...)``.

    Fills the test's variant fields, validates, and appends ``("glu_record", dict)`` to the
    node's ``user_properties`` (which travel to the xdist controller with the report).
    """

    node: Any
    defaults: dict[str, Any] = field(default_factory=dict)

    def __call__(self, **fields: Any) -> dict[str, Any]:
        record = Record.from_dict({**self.defaults, **fields}).to_dict()
        self.node.user_properties.append((RECORD_KEYS[0], record))
        return record

    add = __call__
