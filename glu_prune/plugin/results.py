"""The results table's collector (controller side; the plugin's hooks hand it the reports).

Every suite record travels in report.user_properties (so also from xdist workers); the
controller keeps them and writes results/results.{json,md} at the end. Logic:
glu_prune.results.

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

from glu_prune.plugin.records import records_of
from glu_prune.results import ReportFolderBusy, ReportLock, finish_run
from glu_prune.results.files import environment
from glu_prune.results.runs import new_run_id

SKIP_KEY = "glu_skip"  # user_properties entry: a skipped suite test's identity and reason
FAIL_KEY = "glu_fail"  # ... and a failed (or errored) suite test's identity and error line


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
    """Model, variant (and its level) and benchmark of a suite test, from its parameters
    (None for other tests): a variant is a parameter with ``model`` and ``slug``, a
    benchmark one with ``name`` and ``task``; without one the test's name stands for the
    benchmark. ``pct`` and ``round_to`` come from the variant when it has them."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    variant = next((v for v in params.values() if hasattr(v, "model") and hasattr(v, "slug")),
                   None)
    if variant is None:
        return None
    bench = next((v.name for v in params.values() if hasattr(v, "task")
                  and hasattr(v, "name")), item.originalname.removeprefix("test_"))
    level = {k: getattr(variant, k) for k in ("pct", "round_to") if hasattr(variant, k)}
    if getattr(variant, "shape", "width") == "depth":  # pct 0, yet not level 0: no width level
        level.update(pct=None, shape="depth")
    return {"model": variant.model, "variant": variant.slug, "benchmark": bench,
            "test": plain_nodeid(item.nodeid), **level}


def skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skip, without pytest's ``Skipped:`` prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def failure_line(report: pytest.TestReport) -> str:
    """The first line of a failure's message (the error, not the traceback)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return (text.strip().splitlines() or [""])[0][:300]


def tag_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    """Tag a skipped or failed suite test's report with its identity and reason (runs on
    xdist workers too: the report carries it to the controller)."""
    if hasattr(report, "wasxfail") or not (report.skipped or report.failed):
        return
    identity = suite_test_identity(item)
    if identity is None:
        return
    if report.skipped:
        report.user_properties.append((SKIP_KEY, {**identity, "reason": skip_reason(report)}))
    else:
        report.user_properties.append((FAIL_KEY, {**identity, "error": failure_line(report),
                                                  "when": report.when}))


class ResultsCollector:
    """Controller-side collector: the report folder's lock, each test's records and skip
    reasons, and at the end the run's summary handed to ``glu_prune.results.finish_run``."""

    def __init__(self, out_dir: Path, *, plots: bool, models: list[str],
                 options: dict[str, Any], args: list[str], root: Path,
                 workers: Any = None) -> None:
        self.out_dir = out_dir
        self.plots = plots
        self.models = models  # the run's selected models
        self.options = options  # the glu_* option values, as given
        self.args = args
        self.root = root
        self.workers = workers  # -n, when xdist runs
        self.raw: dict[str, list[Any]] = {}  # nodeid -> that test's raw records
        self.ran: set[str] = set()  # tests that got to run (or were skipped/errored at setup)
        self.lines: list[str] = []  # terminal summary
        self.lock: ReportLock | None = None  # while this run holds the report folder
        self.skipped: dict[str, dict[str, Any]] = {}  # nodeid -> identity and reason
        self.failed: dict[str, dict[str, Any]] = {}  # failed suite tests: identity and error
        self.failing: set[str] = set()  # every test that failed or errored
        self.started = datetime.now(timezone.utc)

    def lock_folder(self) -> None:
        """Lock the report folder before any test, so a clash costs no test time."""
        command = " ".join(["pytest", *self.args])
        try:
            self.lock = ReportLock.acquire(self.out_dir, command)
        except ReportFolderBusy as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
        except OSError as exc:
            raise pytest.UsageError(f"glu-prune: --glu-report={self.options.get('glu_report')}"
                                    f": results cannot be written there ({exc})") from None
        if self.lock.taken_over:
            self.lines.append(f"WARNING {self.lock.taken_over}")

    def add(self, report: pytest.TestReport) -> None:
        """Keep what ``report`` carries: that its test ran, its records, its skip reason."""
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.ran.add(plain_nodeid(report.nodeid))
        if report.failed:
            self.failing.add(plain_nodeid(report.nodeid))
        found = records_of(report)
        if found:  # properties accumulate over setup/call/teardown: the latest has them all
            self.raw[plain_nodeid(report.nodeid)] = found
        for name, value in report.user_properties:
            if name == SKIP_KEY:
                self.skipped[plain_nodeid(report.nodeid)] = value
            elif name == FAIL_KEY:
                self.failed.setdefault(plain_nodeid(report.nodeid), value)  # the first error

    def run_summary(self, session: pytest.Session, exitstatus: int,
                    builds: dict[str, int]) -> dict[str, Any]:
        """The run's entry in results.json (``runs``)."""
        finished = datetime.now(timezone.utc)
        done = completion(session, exitstatus, len(self.ran))
        done["tests"]["failed"] = len(self.failing)
        # failed tests that still recorded (a pinning run fails each on purpose): not "nothing"
        done["tests"]["measured"] = len(self.raw)
        return {"id": new_run_id(self.started),
                "started": self.started.isoformat(timespec="seconds"),
                "finished": finished.isoformat(timespec="seconds"),
                "args": list(self.args), "exitstatus": int(exitstatus),
                **done,
                "models": self.models,
                "skipped": [self.skipped[k] for k in sorted(self.skipped)
                            if k not in self.raw],  # a test that recorded, then skipped: ran
                "failed": [self.failed[k] for k in sorted(self.failed)],
                "workers": self.workers,
                "options": self.options,
                "environment": environment(self.root),
                # variant builds over all workers: each should be built once per run
                "builds": dict(sorted(builds.items()))}

    def finish(self, session: pytest.Session, exitstatus: int, builds: dict[str, int]) -> None:
        """Write the report folder; a run whose results were lost never exits 0."""
        run = self.run_summary(session, exitstatus, builds)
        try:
            lines, error = finish_run(self.raw, self.out_dir, run, plots=self.plots)
        finally:
            self.release()
        self.lines += lines
        if error and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # results lost: never exit 0

    def release(self) -> None:
        """Unlock the report folder (also when the session never finished)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def summary(self, terminalreporter: Any) -> None:
        """The ``glu-prune results`` terminal section."""
        terminalreporter.section("glu-prune results")
        for line in self.lines:
            terminalreporter.write_line(line)
