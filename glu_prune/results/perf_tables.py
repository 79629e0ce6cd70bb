"""The speed tables of results.md: one table per latency/energy benchmark, each headed by
the conditions it was measured under, rows per level with median, spread, rounds,
outliers and the paired speedup with its interval.

Showing only: the statistics and speedups are computed where the numbers are measured
(``glu_prune.performance``); this module formats them.
"""

from __future__ import annotations

from typing import Sequence

from glu_prune.results.analysis import columns_of, several_methods, variant_key
from glu_prune.results.format import ARROWS, MARKS, Table, fmt_number, fmt_value
from glu_prune.results.lookup import sort_records
from glu_prune.results.record import SPEED_KINDS, Record
from glu_prune.results.tables import NO_RUNS, Runs, row_label

PERF_LEGEND = ("Speedup vs p0 = median over paired rounds of (unpruned time / pruned time), "
               "the two alternating in one benchmark session; [low-high] = its 95 % "
               "confidence interval (distribution-free, of the median). **n.s.** = the "
               "interval contains 1: no speed change was measured. q1-q3 = interquartile "
               "range of the rounds; outliers = rounds beyond 1.5 IQR (pytest-benchmark's "
               "count). measured / ideal = speedup / the FLOP (prefill) or weight-byte "
               "(decode) ratio, shown for significant speedups. *unpaired* = a ratio of two "
               "separate measurements (one energy window each), with no interval. paired medians = "
               "the medians of p0's and this level's rounds in those same alternating rounds "
               "(their ratio lies in the speedup's interval; p0's own row is a separate test "
               "and may differ).")


def perf_records(records: Sequence[Record]) -> list[Record]:
    """Speed and energy records worth a row: the judged metrics (the rest, e.g. p90 and
    idle power, stay in results.json), or all of them when none is judged."""
    recs = [r for r in records if r.kind in SPEED_KINDS]
    judged = {(r.benchmark, r.metric) for r in recs if r.judged}
    return [r for r in recs if (r.benchmark, r.metric) in judged] if judged else recs


_PERF_NAMES = {"ttft": "TTFT median", "tpot": "TPOT median", "throughput": "tokens/s median",
               "mlp": "MLP block median", "energy-prefill": "J / prompt token",
               "energy-decode": "J / decoded token"}


def family(benchmark: str) -> str:
    """A speed benchmark's name without its ``@<condition>`` suffix."""
    return benchmark.split("@")[0]


def _one(records: Sequence[Record], key: str) -> str:
    """The value of ``key`` in the records' extra, several joined by ' / '."""
    values = sorted({str(r.extra.get(key)) for r in records if r.extra.get(key) is not None})
    return " / ".join(values)


def _workload(benchmark: str, records: Sequence[Record]) -> str:
    """What a speed table measured, in words (from the records' conditions)."""
    fam = family(benchmark)
    get = {k: _one(records, k) for k in ("prompt_len", "batch", "new_tokens")}
    if not any(get.values()):
        return {"ttft": "TTFT (prefill)", "tpot": "TPOT (decode step)",
                "throughput": "Throughput (generate)"}.get(fam, benchmark)
    if fam == "ttft":
        return f"TTFT: prefill of {get['prompt_len']} tokens at batch {get['batch']}"
    if fam == "tpot":
        return (f"TPOT: time per decode step after a {get['prompt_len']}-token prompt, "
                f"{get['new_tokens']} new tokens (EOS ignored), batch {get['batch']}")
    if fam == "throughput":
        return (f"Throughput: generate() tokens/s at batch {get['batch']}, "
                f"{get['prompt_len']}-token prompts, {get['new_tokens']} new tokens")
    if fam == "mlp":
        return f"Lone GLU MLP block: {get['prompt_len']} tokens"
    if fam.startswith("energy"):
        return f"Energy ({benchmark}): NVML counter, windows of >= 5 s"
    return benchmark


def _depth(records: Sequence[Record], beside_params: bool) -> str | None:
    if family(records[0].benchmark) == "mlp":
        return "one block, no model around it"
    layers, full = _one(records, "layers"), _one(records, "full_layers")
    if not layers or layers == full:
        return f"all {full} layers" if layers else None
    note = (f" (the parameter counts above are of all {full or '?'} layers)"
            if beside_params else "")
    return f"{layers} of {full} layers{note}"


def measured_on(records: Sequence[Record], beside_params: bool = True) -> str:
    """Weights, depth of the full depth, dtype, device and threads of speed records;
    ``beside_params``: say that the architecture table's counts are of the full depth."""
    weights, threads = _one(records, "weights"), _one(records, "threads")
    parts = [f"{weights} weights" if weights else None, _depth(records, beside_params),
             _one(records, "dtype"), _one(records, "device"),
             f"{threads} threads" if threads else None]
    return ", ".join(p for p in parts if p) or "conditions not recorded by the test"


def perf_conditions(benchmark: str, records: Sequence[Record]) -> str:
    """The header line of a speed table: workload, then :func:`measured_on`."""
    return f"{_workload(benchmark, records)} — {measured_on(records)}"


def speedup_of(r: Record, ref: Record | None = None
               ) -> tuple[float | None, float | None, float | None]:
    """(speedup vs level 0, interval low, interval high): as measured, else (records of
    other producers) the ratio to ``ref``'s value, without an interval."""
    e = r.extra
    if e.get("speedup") is not None:
        return e["speedup"], e.get("speedup_low"), e.get("speedup_high")
    if ref is None or not ref.value or not r.value:
        return None, None, None
    ratio = r.value / ref.value if r.direction == "higher" else ref.value / r.value
    return ratio, None, None


def significant(r: Record) -> bool:
    """Whether ``r``'s speedup is a measured change: a paired interval that excludes 1, or
    an unpaired ratio (which has no interval to judge it by)."""
    e = r.extra
    return bool(e.get("speedup_significant") or not e.get("speedup_paired", True))


def speedup_cell(r: Record, ref: Record | None) -> str:
    """``1.25x [1.10-1.41]``; **n.s.** when the interval contains 1; unpaired ratios say so."""
    e = r.extra
    speed = speedup_of(r, ref)[0]
    if r.pct == 0:
        return "reference"
    if speed is None:
        return "-"
    if not e.get("speedup_paired"):
        return f"{speed:.2f}x (unpaired, no interval)"
    low, high = e.get("speedup_low"), e.get("speedup_high")
    if low is None or high is None:
        return f"**n.s.** ({e.get('speedup_rounds', '?')} rounds: too few for an interval)"
    interval = f"[{low:.2f}-{high:.2f}]"
    return f"{speed:.2f}x {interval}" if e.get("speedup_significant") else \
        f"**n.s.** {interval}"


def _pair_cell(r: Record) -> str:
    """``p0 → this`` medians of the paired rounds the speedup was measured from (the p0
    column's own median comes from p0's separate test, so it cannot reconcile the two)."""
    e = r.extra
    if r.pct == 0 or e.get("pair_reference") is None or e.get("pair_variant") is None:
        return "-"
    return f"{fmt_number(e['pair_reference'], r.unit)} → {fmt_number(e['pair_variant'], r.unit)}"


def _perf_row(r: Record, ref: Record | None, runs: Runs, several: bool) -> list[str]:
    e = r.extra
    quartiles = (f"{fmt_number(e['q1'], r.unit)}-{fmt_number(e['q3'], r.unit)}"
                 if e.get("q1") is not None and e.get("q3") is not None else "-")
    efficiency = e.get("efficiency")
    verdict = MARKS.get(r.verdict or "", "").strip() or (r.verdict or "-")
    return [row_label(variant_key(r), several) + runs.mark(r), fmt_value(r), quartiles,
            str(e.get("rounds", "-")), str(e.get("outliers", "-")), _pair_cell(r),
            speedup_cell(r, ref),
            f"{r.ideal:.2f}x" if r.ideal and r.pct else "-",
            f"{efficiency:.2f}" if efficiency is not None and significant(r) and r.pct else "-",
            verdict]


def performance_tables(records: Sequence[Record], runs: Runs = NO_RUNS
                       ) -> list[tuple[str, Table]]:
    """One table per speed benchmark: (its conditions line, rows per level)."""
    recs = perf_records(records)
    if not recs:
        return []
    several = several_methods(recs)
    out, ordered = [], sort_records(recs)
    for bench, metric in columns_of(recs):
        rows = [r for r in ordered if (r.benchmark, r.metric) == (bench, metric)]
        ref = next((r for r in rows if r.pct == 0), None)
        arrow = ARROWS.get(rows[0].direction or "", "")
        name = _PERF_NAMES.get(family(bench), f"{bench} {metric}")
        headers = ["level", f"{name} {arrow}".strip(), "q1-q3", "rounds", "outliers",
                   "paired medians p0 → this", "speedup vs p0 [95 % CI]", "ideal",
                   "measured / ideal", "vs baseline"]
        out.append((perf_conditions(bench, rows),
                    (headers, [_perf_row(r, ref, runs, several) for r in rows])))
    return out


