"""The glu-prune pytest plugin: its hooks and fixtures, each handing off to the session.

The session (``glu_prune.plugin.session.GluSession``) reads the options once, selects the
variant matrix and owns the builder, the results collector and the evaluation and
latency/energy suites. Library code never imports this package.
"""

from __future__ import annotations

from typing import Any

import pytest

from glu_prune.core.loading import weights_obtainable
from glu_prune.core.variants import BuiltVariant, VariantId
from glu_prune.performance.energy import EnergyMeter
from glu_prune.performance.models import PerfModel
from glu_prune.plugin.judge import Judge, judge_for
from glu_prune.plugin.options import add_options
from glu_prune.plugin.perf import PerfSuite
from glu_prune.plugin.perf_session import PerfContext
from glu_prune.plugin.records import Recorder, recorder_for
from glu_prune.plugin.results import tag_outcome
from glu_prune.plugin.session import SESSION_KEY, GluSession, session_of
from glu_prune.plugin.skips import quiet_benchmark_xdist_warning, write_skip_summary
from glu_prune.plugin.variants import check_selected_resources, order


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # bad options stop the run before other plugins start
def pytest_configure(config: pytest.Config) -> None:
    session = config.stash[SESSION_KEY] = GluSession.start(config)
    config.pluginmanager.register(ReportHooks(session), "glu-prune-reports")


class ReportHooks:
    """The hooks whose arguments name no config, bound to one session (registered per
    config: pytester runs several in one process)."""

    def __init__(self, session: GluSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count builds (all processes); keep records and skips (the controller)."""
        self.session.builds.count(report)
        if self.session.results is not None:
            self.session.results.add(report)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session_of(metafunc.config).parametrize(metafunc)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each variant's tests together (their xdist group is set in generate_tests)."""
    order(items)


@pytest.hookimpl(trylast=True)  # after -m/-k deselected: only what will run needs resources
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop before any model is built when a selected benchmark cannot score here; keep
    pytest-benchmark's xdist warning for runs that selected a benchmark."""
    # weights_obtainable looked up here, at call time: the seam tests replace
    check_selected_resources(session.items, session_of(session.config).opts.models_dir,
                             weights_obtainable)
    quiet_benchmark_xdist_warning(session.config, session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    tag_outcome(item, report)  # a skipped or failed suite test's identity and reason
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Lock the report folder before any test, so a clash costs no test time."""
    results = session_of(session.config).results
    if results is not None:
        results.lock_folder()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    glu = session_of(session.config)
    if glu.results is not None:
        glu.results.finish(session, exitstatus, glu.builds.builds)


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION_KEY in config.stash:  # absent when configure stopped on a bad option
        config.stash[SESSION_KEY].release()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The skip reasons, the results section, then the latency/energy section."""
    write_skip_summary(terminalreporter)
    glu = session_of(config)
    if glu.results is not None:
        glu.results.summary(terminalreporter)
    glu.perf.summary(terminalreporter)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: only called when xdist runs
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    guard = session_of(node.config).guard
    if guard is not None:
        guard.pytest_xdist_node_collection_finished(node, ids)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def variant(variant_id: VariantId, request: pytest.FixtureRequest) -> BuiltVariant:
    """The pruned variant ``variant_id``, built once per process (skips when weights are absent)."""
    return session_of(request.config).build(variant_id, request)


@pytest.fixture
def glu_eval(request: pytest.FixtureRequest) -> Judge:
    """``glu_eval.check(variant, benchmark, kind)``: evaluate (once per variant) and judge
    against the baseline. Skips before the model is built when no baseline entry exists."""
    return judge_for(request, session_of(request.config).quality)


@pytest.fixture
def glu_record(request: pytest.FixtureRequest) -> Recorder:
    """``glu_record(benchmark=..., metric=..., value=..., kind=..., ...)`` adds one
    results-table record of the test's variant."""
    return recorder_for(request)


@pytest.fixture(scope="session")
def perf_context(pytestconfig: pytest.Config) -> PerfContext:
    """Session state of latency/energy tests (``glu_prune.plugin.perf_session.PerfContext``)."""
    return session_of(pytestconfig).perf.context()


@pytest.fixture(scope="module")
def perf_model(request: pytest.FixtureRequest, perf_context: PerfContext) -> PerfModel:
    """The perf variant ``request.param`` built (``glu_prune.performance.models.PerfModel``);
    skips, with the reason, a variant this run cannot time (a depth variant at reduced depth)."""
    if request.param.unmeasurable:
        pytest.skip(request.param.unmeasurable)
    return perf_context.models.get(request.param)


@pytest.fixture(scope="session")
def energy_meter(perf_context: PerfContext) -> tuple[EnergyMeter, float]:
    """``(meter, idle_watts)``; idle power measured once per run; skips without NVML."""
    return PerfSuite.energy_meter(perf_context)
