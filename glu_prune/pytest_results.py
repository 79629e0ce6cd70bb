"""pytest plugin part: the results table (loaded by ``glu_prune.pytest_plugin``).

Every suite record travels in report.user_properties (so also from xdist workers); the
controller keeps them and writes results/results.{json,md} at the end. Logic: glu_prune.report.
"""

from __future__ import annotations

from typing import Any

import pytest


def plain_nodeid(nodeid: str) -> str:
    """The node id without the ``@<group>`` suffix xdist adds under loadgroup (xdist's own
    rule: an '@' after the last ']'), so serial and parallel runs name a test alike."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


class _Results:
    """Controller-side collector (registered as a plugin object; thin, see glu_prune.report)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.raw: dict[str, list[Any]] = {}  # nodeid -> that test's raw records
        self.lines: list[str] = []  # terminal summary

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from glu_prune.report import RECORD_KEYS

        found = [value for name, value in report.user_properties if name in RECORD_KEYS]
        if found:  # properties accumulate over setup/call/teardown: the latest has them all
            self.raw[plain_nodeid(report.nodeid)] = found

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pathlib import Path

        from glu_prune.pytest_plugin import BUILDS_KEY
        from glu_prune.report import finish_run
        from glu_prune.report_io import environment

        opt = self.config.option
        run = {"args": list(self.config.invocation_params.args), "exitstatus": int(exitstatus),
               "workers": getattr(opt, "numprocesses", None),
               "options": {k: v for k, v in sorted(vars(opt).items()) if k.startswith("glu_")},
               "environment": environment(self.config.rootpath),
               # variant builds over all workers: each should be built once per run
               "builds": dict(sorted(self.config.stash.get(BUILDS_KEY, {}).items()))}
        out = Path(self.config.invocation_params.dir, self.config.getoption("--glu-report"))
        self.lines = finish_run(self.raw, out, run, plots=self.config.getoption("--glu-plots"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("glu-prune results")
        for line in self.lines:
            terminalreporter.write_line(line)


RESULTS_KEY = pytest.StashKey[_Results]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    group.addoption("--glu-report", default="results", metavar="DIR",
                    help="folder for results.json and results.md, written when a test "
                         "recorded numbers (default: results)")
    group.addoption("--glu-plots", action="store_true", default=False,
                    help="also write PNG charts into the --glu-report folder; needs "
                         "matplotlib, the [plots] extra (default: off)")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist workers only send records; the controller writes
        return
    config.stash[RESULTS_KEY] = _Results(config)
    config.pluginmanager.register(config.stash[RESULTS_KEY], "glu-prune-results")


@pytest.fixture
def glu_record(request: pytest.FixtureRequest) -> Any:
    """``glu_record(benchmark=..., metric=..., value=..., ...)`` adds one results-table
    record; the test's variant (model, slug, method, level) is filled in."""
    from glu_prune.report import Recorder

    vid = getattr(getattr(request.node, "callspec", None), "params", {}).get("variant_id")
    defaults = {"model": vid.model, "variant": vid.slug, "method": vid.method,
                "pct": vid.pct, "round_to": vid.round_to} if vid is not None else {}
    return Recorder(request.node, defaults)
