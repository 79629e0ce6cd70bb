"""The console's skip summary: one line per skip reason with its count.

pytest's ``-rs`` prints one line per skipping place, so a run where 107 tests skip for
one reason ("Skipping non-benchmark", "no weights for llama-3.2-1b") buries its failures.
pytest.ini asks only for failures and errors (``-rfE``); this section says why the rest
skipped, most frequent reason first.
"""

from __future__ import annotations

from typing import Any, Iterable

from glu_prune.plugin.results import SKIP_KEY, skip_reason
from glu_prune.results.markdown import generic_reason, reason_counts

MAX_REASON = 200  # characters of a reason on the console (results.md keeps all of it)


def skip_lines(reports: Iterable[Any]) -> list[str]:
    """``"<count> skipped: <reason>"`` per distinct reason, most frequent first; a suite
    test's own variant and benchmark read ``<variant>`` / ``<benchmark>`` (its id names
    them), so one cause over many variants is one line, as in results.md."""
    counts = reason_counts(_short(_reason(r)) for r in reports if getattr(r, "skipped", False))
    return [f"{n} skipped: {reason}" for reason, n in counts]


def _reason(report: Any) -> str:
    tagged = next((v for k, v in getattr(report, "user_properties", ()) if k == SKIP_KEY), None)
    return generic_reason(tagged) if tagged is not None else skip_reason(report)


def _short(reason: str) -> str:
    line = " ".join(reason.split())  # one line, whatever the reason's own newlines
    return line if len(line) <= MAX_REASON else line[:MAX_REASON - 1] + "…"


def write_skip_summary(terminalreporter: Any) -> None:
    """The ``skipped`` section (nothing when no test skipped)."""
    lines = skip_lines(terminalreporter.stats.get("skipped", []))
    if lines:
        terminalreporter.section("skipped, by reason", sep="-")
        for line in lines:
            terminalreporter.write_line(line)


def quiet_benchmark_xdist_warning(config: Any, items: list[Any]) -> None:
    """pytest-benchmark warns that xdist disables benchmarks whenever a benchmark test is
    collected, even when -k/-m deselected every one; after deselection, drop that flag
    when no selected test uses the ``benchmark`` fixture (pytest-benchmark's own test)."""
    bench = config.pluginmanager.get_plugin("pytest-benchmark")
    if bench is None or not hasattr(bench, "xdist_benchmark_found"):
        return
    if not any("benchmark" in getattr(item, "fixturenames", ()) for item in items):
        bench.xdist_benchmark_found = False
