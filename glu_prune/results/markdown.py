"""results.md and the terminal summary: the legend, banners, per model its sections, and
lines for what did not run.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

from glu_prune.results import equal_params
from glu_prune.results.analysis import by_model, chance_benchmarks, count_line, regressions
from glu_prune.results.format import level_label, render
from glu_prune.results.lookup import benchmark_key, model_index
from glu_prune.results.perf_tables import PERF_LEGEND, family, performance_tables
from glu_prune.results.record import Record
from glu_prune.results.runs import failed_run
from glu_prune.results.tables import SECTIONS, Runs, architecture_table, group_table

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
- Groups: mean of value/ref - 1 (ref/value - 1 where lower is better): negative = worse;
  `±` = half-width of its 95 % interval, from the benchmarks' standard errors (a metric
  without one, such as wikitext perplexity, counts as exact).
- `[r1, 2 d]`: the record comes from an earlier run (see *Runs*), that long before the
  newest; `incomplete` = from a run that stopped before all its selected tests ran.""".split("\n")


def incomplete_banner(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per run that stopped before all its selected tests ran or whose every test
    failed (empty when none did): results.md opens with these, so a partial or failed run
    never passes for a whole one."""
    labels = Runs(list(runs)).labels if len(runs) > 1 else {}
    lines = []
    for run in runs:
        tests = run.get("tests") or {}
        label = labels.get(run.get("id"))
        source = " ".join(filter(None, (label, f"({run['source']})" if run.get("source")
                                        else None)))
        if failed_run(run):
            lines.append(failed_banner(run, source))
            continue
        if run.get("complete", True):
            continue
        lines.append(f"**INCOMPLETE RUN{' ' + source if source else ''}: "
                     f"{run.get('stopped') or 'stopped early'} after {tests.get('ran', '?')} "
                     f"of {tests.get('selected', '?')} selected tests.** Its records hold only "
                     f"what ran" + (f" (marked `{label}, incomplete`)" if label else "")
                     + "; rerunning its selection into this folder completes them.")
    return lines


def failed_banner(run: dict[str, Any], source: str = "") -> str:
    """The banner of a run whose every test failed or errored, with its first error."""
    first = next(iter(run.get("failed") or []), None)
    error = f" First: {first['test']}: {first['error']}" if first else ""
    head = f"**FAILED RUN{' ' + source if source else ''}: all {run['tests']['ran']} tests "
    measured = run["tests"].get("measured") or 0
    if measured:  # e.g. --glu-update-baselines: each pinned test fails on purpose
        return (f"{head}that ran failed or errored; {measured} of them recorded their "
                f"measurements, shown below.**{error}")
    return (f"{head}that ran failed or errored, so it measured nothing.**{error} Any other "
            f"records here come from earlier runs.")


def skipped_line(run: dict[str, Any]) -> str:
    """One line: how many of ``run``'s selected tests were skipped without measuring
    anything, and why (the commonest reasons first), e.g. ``112 of 112 skipped: no
    weights for llama-3.2-1b (offline)``; "" when none was."""
    skipped = run.get("skipped") or []
    if not skipped:
        return ""
    counts = reason_counts(_short(generic_reason(s)) for s in skipped)
    causes = [reason if len(counts) == 1 else f"{n} × {reason}" for reason, n in counts[:3]]
    if len(counts) > 3:
        causes.append(f"{len(counts) - 3} other reason(s), see below")
    selected = (run.get("tests") or {}).get("selected", "?")
    return f"{len(skipped)} of {selected} skipped: {'; '.join(causes)}"


def reason_counts(reasons: Iterable[str]) -> list[tuple[str, int]]:
    """``(reason, count)`` per distinct reason, the commonest first (ties alphabetical)."""
    return sorted(Counter(reasons).items(), key=lambda rn: (-rn[1], rn[0]))


def _short(reason: str) -> str:
    """A skip reason's first clause (its fix follows after a ';'), at most 160 characters."""
    first = reason.split("; ")[0]
    return first if len(first) <= 160 else first[:157] + "..."


def generic_reason(skip: dict[str, Any]) -> str:
    """A skip's reason with its own variant and benchmark named generically, so the same
    cause over many tests reads as one line."""
    reason = str(skip.get("reason") or "skipped")
    if skip.get("variant"):
        reason = reason.replace(str(skip["variant"]), "<variant>")
    if skip.get("benchmark"):
        reason = re.sub(rf"(?<![\w/.-]){re.escape(str(skip['benchmark']))}(?![\w.-])",
                        "<benchmark>", reason)
    return reason


def _level_of(skip: dict[str, Any]) -> tuple[float, int] | None:
    """(pct, round_to) of a skipped test, None when its entry names no level (entries
    written before skips carried it)."""
    if skip.get("pct") is None:
        return None
    return float(skip["pct"]), int(skip.get("round_to") or 1)


def not_run_lines(model: str, records: Sequence[Record], runs: Sequence[dict[str, Any]]
                  ) -> list[str]:
    """One line per reason selected tests of ``model`` did not run (skips whose variant
    and benchmark have no record, e.g. weights or baselines missing): how many tests,
    which benchmarks at which levels, and the reason."""
    measured = {(r.variant, family(r.benchmark)) for r in records}
    groups: dict[str, dict[str, set]] = {}
    for skip in (s for run in runs for s in run.get("skipped") or []):
        bench = str(skip.get("benchmark", ""))
        if skip.get("model") != model or (skip.get("variant"), family(bench)) in measured:
            continue
        group = groups.setdefault(generic_reason(skip), defaultdict(set))
        group["tests"].add(skip.get("test") or "?")
        group["benchmarks"].add(bench)
        level = _level_of(skip)
        if level is not None:
            group["levels"].add(level)
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


def _model_section(model: str, every: Sequence[Record], runs: Runs,
                   architectures: dict[str, str]) -> list[str]:
    lines = [f"## {model}", "", count_line(every), ""]
    recs = [r for r in every if r.shape == "width"]  # the level tables are width's
    skipped = not_run_lines(model, recs, runs.runs)
    lines += [f"- {line}" for line in skipped] + ([""] if skipped else [])
    arch = render(architecture_table(model, recs))
    same = architectures.get(arch)
    lines += ["### Architecture", "",
              f"Same levels and architecture as {same} (above)." if same else arch, ""]
    architectures.setdefault(arch, model)
    left_out = chance_benchmarks(recs)  # the group means' footnote
    for title, make in SECTIONS:
        table = make(recs, runs=runs)
        if table[1]:
            lines += [f"### {title}", "", render(table), ""]
            if make is group_table and left_out:
                lines += [f"Left out of the means (at chance at level 0): "
                          f"{', '.join(left_out)}.", ""]
    perf = performance_tables(recs, runs)
    if perf:
        lines += ["### Performance", "", PERF_LEGEND, ""]
        for conditions, table in perf:
            lines += [f"#### {conditions}", "", render(table), ""]
    lines += equal_params.section(model, every, render)
    regs = regressions(every)
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
        table = group_table([r for r in recs if r.shape == "width"])  # per width level
        if table[1]:
            out += render(table, "simple").splitlines()
        out += [f"  REG {line}" for line in regressions(recs)]
    return out
