"""pytest plugin part: the results table (loaded by ``glu_prune.plugin``).

Every suite record travels in report.user_properties (so also from xdist workers); the
controller keeps them and writes results/results.{json,md} at the end. Logic: glu_prune.results.report.

Results are never silently lost or mixed: the controller locks the report folder at session
start (a second run on the same folder stops up front, naming the holder), a run that
stopped before all its selected tests ran is written with ``complete: false`` and an
INCOMPLETE RUN banner, and a run whose results could not be written exits non-zero.

The folder accumulates: each run adds its records (replacing earlier ones of the same
measurement) and is listed with its time, command and completeness; the skipped suite
tests' reasons and the selected models go with it, so results.md says why a selected
model or benchmark has no numbers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

SKIP_KEY = "glu_skip"  # user_properties entry: a skipped suite test's identity and reason


def plain_nodeid(nodeid: str) -> str:
    """The node id without the ``@<group>`` suffix xdist adds under loadgroup (xdist's own
    rule: an '@' after the last ']'), so serial and parallel runs name a test alike."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def completion(session: pytest.Session, exitstatus: int, ran: int) -> dict[str, Any]:
    """Whether the run got through its selection: ``complete``, ``tests`` (selected, ran)
    and why it ``stopped`` (None when complete)."""
    selected = session.testscollected  # after -k/-m deselection; under xdist, the workers'
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    complete = not interrupted and ran >= selected
    reason = session.shouldstop or session.shouldfail  # -x / --maxfail: "stopping after..."
    stopped = None
    if interrupted:
        stopped = "interrupted"
    elif not complete:
        stopped = f"stopped early ({reason})" if reason else "stopped early"
    return {"complete": complete, "tests": {"selected": selected, "ran": ran},
            "stopped": stopped}


def suite_test_identity(item: pytest.Item) -> dict[str, Any] | None:
    """Model, variant and benchmark of a suite test, from its parameters (None for other
    tests): a variant is a parameter with ``model`` and ``slug``, a benchmark one with
    ``name`` and ``task``; without one the test's name stands for the benchmark."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    variant = next((v for v in params.values() if hasattr(v, "model") and hasattr(v, "slug")),
                   None)
    if variant is None:
        return None
    bench = next((v.name for v in params.values() if hasattr(v, "task")
                  and hasattr(v, "name")), item.originalname.removeprefix("test_"))
    return {"model": variant.model, "variant": variant.slug, "benchmark": bench,
            "test": plain_nodeid(item.nodeid)}


def skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skip, without pytest's ``Skipped:`` prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Tag a skipped suite test's report with its identity and reason (runs on xdist
    workers too: the report carries it to the controller)."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        identity = suite_test_identity(item)
        if identity is not None:
            report.user_properties.append((SKIP_KEY, {**identity,
                                                      "reason": skip_reason(report)}))
    return report


def selected_models(config: pytest.Config) -> list[str]:
    """The models this run selected (--glu-models, else every registered model)."""
    from glu_prune.core.variants import all_model_names, parse_list

    return parse_list(config.getoption("--glu-models", None)) or all_model_names()


class _Results:
    """Controller-side collector (registered as a plugin object; thin, see glu_prune.results.report)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.raw: dict[str, list[Any]] = {}  # nodeid -> that test's raw records
        self.ran: set[str] = set()  # tests that got to run (or were skipped/errored at setup)
        self.lines: list[str] = []  # terminal summary
        self.lock: Any = None  # glu_prune.results.record_io.ReportLock while this run holds it
        self.skipped: dict[str, dict[str, Any]] = {}  # nodeid -> identity and reason
        self.started = datetime.now(timezone.utc)

    @property
    def out_dir(self) -> Path:
        return Path(self.config.invocation_params.dir, self.config.getoption("--glu-report"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Lock the report folder before any test, so a clash costs no test time."""
        from glu_prune.results.record_io import ReportFolderBusy, ReportLock

        command = " ".join(["pytest", *self.config.invocation_params.args])
        try:
            self.lock = ReportLock.acquire(self.out_dir, command)
        except ReportFolderBusy as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
        except OSError as exc:
            raise pytest.UsageError(f"glu-prune: --glu-report="
                                    f"{self.config.getoption('--glu-report')}: results "
                                    f"cannot be written there ({exc})") from None
        if self.lock.taken_over:
            self.lines.append(f"WARNING {self.lock.taken_over}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from glu_prune.results.report import RECORD_KEYS

        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.ran.add(plain_nodeid(report.nodeid))
        found = [value for name, value in report.user_properties if name in RECORD_KEYS]
        if found:  # properties accumulate over setup/call/teardown: the latest has them all
            self.raw[plain_nodeid(report.nodeid)] = found
        for name, value in report.user_properties:
            if name == SKIP_KEY:
                self.skipped[plain_nodeid(report.nodeid)] = value

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from glu_prune.plugin import BUILDS_KEY
        from glu_prune.results.report import finish_run
        from glu_prune.results.record_io import environment, new_run_id

        opt = self.config.option
        finished = datetime.now(timezone.utc)
        run = {"id": new_run_id(self.started),
               "started": self.started.isoformat(timespec="seconds"),
               "finished": finished.isoformat(timespec="seconds"),
               "args": list(self.config.invocation_params.args), "exitstatus": int(exitstatus),
               **completion(session, exitstatus, len(self.ran)),
               "models": selected_models(self.config),
               "skipped": [self.skipped[k] for k in sorted(self.skipped)
                           if k not in self.raw],  # a test that recorded, then skipped: ran
               "workers": getattr(opt, "numprocesses", None),
               "options": {k: v for k, v in sorted(vars(opt).items()) if k.startswith("glu_")},
               "environment": environment(self.config.rootpath),
               # variant builds over all workers: each should be built once per run
               "builds": dict(sorted(self.config.stash.get(BUILDS_KEY, {}).items()))}
        try:
            lines, error = finish_run(self.raw, self.out_dir, run,
                                      plots=self.config.getoption("--glu-plots"))
        finally:
            self.release()
        self.lines += lines
        if error and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # results lost: never exit 0

    def pytest_unconfigure(self) -> None:
        self.release()  # when the session never finished (e.g. a usage error after start)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("glu-prune results")
        for line in self.lines:
            terminalreporter.write_line(line)


RESULTS_KEY = pytest.StashKey[_Results]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    group.addoption("--glu-report", default="results", metavar="DIR",
                    help="folder for results.json and results.md, written when a test "
                         "recorded numbers; locked while a run uses it (default: results)")
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
    from glu_prune.results.report import Recorder

    vid = getattr(getattr(request.node, "callspec", None), "params", {}).get("variant_id")
    defaults = {"model": vid.model, "variant": vid.slug, "method": vid.method,
                "pct": vid.pct, "round_to": vid.round_to} if vid is not None else {}
    return Recorder(request.node, defaults)
