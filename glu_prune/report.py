"""The results tables: markdown (tabulate) per model, the terminal summary, and writing files.

Showing only: verdicts (ok / regression / improvement) are computed by the judging code
(``baselines``, ``perf_baselines``) and merely displayed here. Never imports pytest, so
``python -m glu_prune report merge`` and the plugin share this code. The record schema,
JSON and merging live in ``glu_prune.report_io``.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tabulate import tabulate

from glu_prune.report_io import (CAPABILITY_KINDS, PERF_KINDS, RECORD_KEYS, Record,
                                 architecture, benchmark_key, dedupe, document,
                                 header_line, metric_key, sort_records, write_json,
                                 write_text_atomically)

LOG = logging.getLogger(__name__)

__all__ = ["Record", "Recorder", "markdown", "terminal_summary", "write_results"]

MARKS = {"regression": " **REG**", "improvement": " *IMP*", "pinned": " (pinned)"}
LEGEND = ("Cell = value (change vs level 0 of this run: points for accuracy, % otherwise; "
          "`~` = vs the stored baseline, level 0 not run). **REG** = regression beyond "
          "tolerance (the test failed), *IMP* = improvement beyond tolerance, (pinned) = "
          "baseline rewritten, `-` = not run. Group means: value/ref - 1 (ref/value - 1 where "
          "lower is better), negative = worse. Speed: measured/ideal speedup vs level 0.")

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


def _fmt_value(r: Record) -> str:
    if r.kind == "accuracy" and abs(r.value) <= 1:
        return f"{r.value:.3f}"
    if r.kind == "perplexity":
        return f"{r.value:.2f}"
    if r.unit == "s" and abs(r.value) < 1:  # latencies read better in milliseconds
        return f"{1000 * r.value:.4g} ms"
    return f"{r.value:.4g}" + (f" {r.unit}" if r.unit else "")


def _fmt_change(r: Record, ref: float) -> str:
    if r.kind == "accuracy" and abs(r.value) <= 1 and abs(ref) <= 1:
        return f"{100 * (r.value - ref):+.1f}"  # points
    if not ref:
        return "n/a"
    return f"{100 * (r.value / ref - 1):+.1f}%"


# ---------------------------------------------------------------- tables


Table = tuple[list[str], list[list[str]]]
VariantKey = tuple[float, str, int]  # (pct, method, round_to)


def _vkey(r: Record) -> VariantKey:
    return (r.pct if r.pct is not None else -1.0, r.method or "", r.round_to)


def _columns(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(benchmark, metric) columns in registry order."""
    model = records[0].model
    cols = {(r.benchmark, r.metric) for r in records}
    return sorted(cols, key=lambda c: (benchmark_key(model, c[0]), metric_key(model, *c)))


def metric_label(metric: str) -> str:
    """``acc_norm,none`` -> ``acc_norm``; ``exact_match,strict-match`` -> ``strict-match``."""
    name, _, filt = metric.partition(",")
    return name if filt in ("", "none") else filt


def _headers(cols: list[tuple[str, str]]) -> list[str]:
    """The benchmark name; ``benchmark metric`` when a benchmark has several columns."""
    count = defaultdict(int)
    for bench, _ in cols:
        count[bench] += 1
    return [b if count[b] == 1 else f"{b} {metric_label(m)}" for b, m in cols]


def _split_primary(cols: list[tuple[str, str]]) -> tuple[list, list]:
    """(first metric of each benchmark, the other metrics): one column per benchmark keeps
    the main table readable; the rest get their own table."""
    primary, seen = [], set()
    for bench, metric in cols:
        if bench not in seen:
            seen.add(bench)
            primary.append((bench, metric))
    return primary, [c for c in cols if c not in primary]


def _several_methods(records: Sequence[Record]) -> bool:
    return len({r.method for r in records if r.pct}) > 1


def _reference(records: Sequence[Record]) -> dict[tuple[str, str], Record]:
    """Level-0 record per (benchmark, metric): what every change is measured against."""
    return {(r.benchmark, r.metric): r for r in records if r.pct == 0}


def _by_variant(records: Sequence[Record]) -> dict[VariantKey, dict[tuple[str, str], Record]]:
    rows: dict[VariantKey, dict[tuple[str, str], Record]] = {}
    for r in sort_records(records):
        rows.setdefault(_vkey(r), {})[(r.benchmark, r.metric)] = r
    return rows


def _label(key: VariantKey, several: bool) -> str:
    return level_label(key[0], key[2], key[1], several)


def architecture_table(model: str, records: Sequence[Record]) -> Table:
    """Level, pruning %, expansion ratio, intermediate size, params (M), % params removed."""
    headers = ["level", "pruned %", "expansion", "intermediate", "params (M)", "params removed %"]
    rows, seen = [], set()
    for r in sorted(sort_records(records), key=lambda r: (_vkey(r)[0], r.round_to)):
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


def _cell(r: Record | None, ref: Record | None) -> str:
    if r is None:
        return "-"
    text = _fmt_value(r)
    if r.pct == 0:
        pass
    elif ref is not None:
        text += f" ({_fmt_change(r, ref.value)})"
    elif r.baseline is not None:
        text += f" (~{_fmt_change(r, r.baseline)})"
    return text + MARKS.get(r.verdict or "", "")


def capability_table(records: Sequence[Record], primary: bool = True) -> Table:
    """One row per level, one column per benchmark (its first metric in registry order;
    ``primary=False``: the other metrics); cell = value, change and mark."""
    recs = [r for r in records if r.kind in CAPABILITY_KINDS]
    cols = _split_primary(_columns(recs))[0 if primary else 1] if recs else []
    if not cols:
        return [], []
    refs, several = _reference(recs), _several_methods(recs)
    rows = [[_label(key, several)] + [_cell(cells.get(c), refs.get(c)) for c in cols]
            for key, cells in _by_variant(recs).items()]
    if primary:
        return ["level"] + [bench for bench, _ in cols], rows
    return ["level"] + [f"{b} {metric_label(m)}" for b, m in cols], rows


def other_metrics_table(records: Sequence[Record]) -> Table:
    """The benchmarks' further metrics (arc_challenge acc, gsm8k flexible-extract, ...)."""
    return capability_table(records, primary=False)


def benchmark_changes(records: Sequence[Record]) -> dict[VariantKey, dict[str, float]]:
    """Per variant: benchmark -> mean quality change over its metrics (vs level 0, else
    vs baseline). Level 0 itself is left out."""
    recs = [r for r in records if r.kind in CAPABILITY_KINDS]
    refs = _reference(recs)
    out: dict[VariantKey, dict[str, list[float]]] = {}
    for r in recs:
        if not r.pct:
            continue
        ref = refs.get((r.benchmark, r.metric))
        ref_value = ref.value if ref is not None else r.baseline
        change = quality_change(r.value, ref_value, r.direction) if ref_value else None
        if change is not None:
            out.setdefault(_vkey(r), {}).setdefault(r.benchmark, []).append(change)
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


def group_table(records: Sequence[Record]) -> Table:
    """Mean relative change of the fragile and the robust group, per level."""
    means, several = group_means(records), _several_methods(records)
    if not means:
        return [], []
    regs = defaultdict(int)
    for r in records:
        if r.kind in CAPABILITY_KINDS and r.verdict == "regression":
            regs[_vkey(r)] += 1
    rows = [[_label(k, several), _pct(m.get("fragile")), _pct(m.get("robust")),
             _pct(m.get("all")), str(regs[k])] for k, m in means.items()]
    return ["level", "fragile", "robust", "all", "regressions"], rows


def _perf_cell(r: Record | None, ref: Record | None) -> str:
    if r is None:
        return "-"
    text = _fmt_value(r)
    speed = r.extra.get("speedup")
    if r.pct and ref is not None and ref.value:
        text += f" ({_fmt_change(r, ref.value)})"
        if speed is None:
            speed = r.value / ref.value if r.direction == "higher" else ref.value / r.value
    if r.pct and speed is not None:
        text += f" {speed:.2f}x" + (f"/{r.ideal:.2f}x" if r.ideal else "")
    return text + MARKS.get(r.verdict or "", "")


def perf_records(records: Sequence[Record]) -> list[Record]:
    """Speed and energy records worth a column: the judged metrics (the rest, e.g. spread
    and idle power, stay in results.json), or all of them when none is judged."""
    recs = [r for r in records if r.kind in PERF_KINDS]
    judged = {(r.benchmark, r.metric) for r in recs if r.judged}
    return [r for r in recs if (r.benchmark, r.metric) in judged] if judged else recs


def performance_table(records: Sequence[Record]) -> Table:
    """TTFT, TPOT, tokens/s, J/token per level: value, change, measured/ideal speedup."""
    recs = perf_records(records)
    if not recs:
        return [], []
    cols, refs, several = _columns(recs), _reference(recs), _several_methods(recs)
    rows = [[_label(key, several)] + [_perf_cell(cells.get(c), refs.get(c)) for c in cols]
            for key, cells in _by_variant(recs).items()]
    return ["level"] + _headers(cols), rows


def method_table(records: Sequence[Record]) -> Table:
    """Per level, each method's fragile / robust mean change (when several methods ran)."""
    if not _several_methods(records):
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


SECTIONS: tuple[tuple[str, Callable[[Sequence[Record]], Table]], ...] = (
    ("Capabilities", capability_table),
    ("Capabilities: further metrics", other_metrics_table),
    ("Groups: mean relative change vs level 0", group_table),
    ("Performance", performance_table),
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
    lines = []
    for run in runs:
        if run.get("complete", True):
            continue
        tests = run.get("tests") or {}
        source = f" ({run['source']})" if run.get("source") else ""
        lines.append(f"**INCOMPLETE RUN{source}: {run.get('stopped') or 'stopped early'} "
                     f"after {tests.get('ran', '?')} of {tests.get('selected', '?')} "
                     f"selected tests.** These tables hold only what ran; a complete run "
                     f"writing this folder replaces them.")
    return lines


def markdown(records: Sequence[Record], header: str = "", banner: Sequence[str] = ()) -> str:
    """The whole ``results.md``: ``banner`` lines first (incomplete runs, mixed settings),
    then per model, architecture then the result tables."""
    lines = [f"> {line}\n" for line in banner] + ["# glu-prune results", ""]
    if header:
        lines += [f"_{header}_", ""]
    lines += [LEGEND, ""]
    for model, recs in by_model(records).items():
        counts = defaultdict(int)
        for r in recs:
            counts[r.verdict or "not judged"] += 1
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        lines += [f"## {model}", "", f"{len(recs)} records: {summary}.", "",
                  "### Architecture", "", render(architecture_table(model, recs)), ""]
        for title, make in SECTIONS:
            table = make(recs)
            if table[1]:
                lines += [f"### {title}", "", render(table), ""]
        regs = regressions(recs)
        if regs:
            lines += ["### Regressions", ""] + [f"- {line}" for line in regs] + [""]
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

    What was written is all this run measured, nothing older: a run that stopped early
    (a run dict with ``complete: false``) still replaces the files, but results.json then
    says ``"complete": false`` and results.md opens with an INCOMPLETE RUN banner naming
    how many of the selected tests ran. ``notes`` are further banner lines (e.g. mixed
    settings of a merge). Each file is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(records, header_line(runs), [*incomplete_banner(runs), *notes])
    paths = [write_json(document(records, runs), out / "results.json"),
             write_text_atomically(out / "results.md", text)]
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if plots:
        from glu_prune.plots import write_plots

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


def finish_run(raw: dict[str, list[Any]], out_dir: str | os.PathLike, run: dict[str, Any],
               *, plots: bool = False) -> tuple[list[str], str | None]:
    """End of a pytest run: write the results when any test recorded numbers.

    Returns the terminal summary lines and, when the results could not be written, one
    error line (the run must then fail; see ``glu_prune.pytest_results``).
    """
    records, problems = collect(raw)
    if not records:
        return problems + [f"no test recorded results: nothing written to {out_dir}"], None
    try:
        paths = write_results(records, out_dir, [run], plots=plots)
    except (OSError, ImportError) as exc:
        error = f"ERROR writing the results to {out_dir} failed: {exc}"
        LOG.error("%s", error)
        return terminal_summary(records) + problems + [error], error
    written = [f"written: {', '.join(map(str, paths))}"]
    banner = [line.replace("**", "") for line in incomplete_banner([run])]
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
