"""The glu-prune pytest plugin: options, the variant fixture and ordering hooks.

Thin by design: it reads options and hands off to ``glu_prune.core.variants`` (building),
``glu_prune.evaluation.harness``/``baselines`` (judging) and ``glu_prune.results.report`` (showing).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from glu_prune.plugin import judge as _judge, quality as _quality  # light: no torch, no lm-eval
from glu_prune.console import quiet_libraries
from glu_prune.plugin.gpus import pin_worker
from glu_prune.core.loading import (MODELS_DIR_ENV, ArchitectureMismatch, WeightsUnavailable,
                                    weights_obtainable)
from glu_prune.plugin.options import validate_options
from glu_prune.evaluation.preflight import PreflightError, check_ifeval_resources
from glu_prune.plugin.quality import add_options as add_eval_options
from glu_prune.core.variants import (BuiltVariant, VariantCache, VariantId, all_model_names,
                                     order_key, parse_list, select_variants)

# Latency/energy and the results table are plugins of their own, loaded with this one.
pytest_plugins = ["glu_prune.plugin.perf", "glu_prune.plugin.results"]

CACHE_KEY = pytest.StashKey[VariantCache]()
VARIANTS_KEY = pytest.StashKey[list[VariantId]]()
BUILDS_KEY = pytest.StashKey[dict[str, int]]()  # controller: slug -> builds over all workers

# Extra per-variant parameters: argname -> fn(metafunc, variant_id) -> [(value, id_suffix)].
# The test is parametrized over (variant, value) pairs with id "<slug>-<id_suffix>".
PER_VARIANT_PARAMS: dict[str, Callable[[pytest.Metafunc, VariantId], list[tuple[Any, str]]]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    group.addoption("--glu-models", default=None,
                    help="comma list of registered models to run "
                         "(default: all registered models)")
    group.addoption("--glu-methods", default="maw",
                    help="comma list of importance methods: maw, vow, pon, l2, random "
                         "(default: maw)")
    group.addoption("--glu-levels", default=None,
                    help="comma list of pruning percentages (default: each model's levels)")
    group.addoption("--glu-round-to", default="1",
                    help="comma list of kept-size roundings, e.g. 1,128 (default: 1)")
    group.addoption("--glu-require-weights", action="store_true", default=False,
                    help="fail, instead of skip, when a model's weights cannot be had "
                         "(default: off)")
    group.addoption("--glu-models-dir", default=None,
                    help=f"folder holding <model-name>/ saved models; also ${MODELS_DIR_ENV} "
                         f"(default: hub ids)")
    group.addoption("--glu-device", default=None,
                    help="torch device for the suite (default: cuda when available, else cpu)")
    add_eval_options(group)  # --glu-limit, --glu-batch-size, ... (glu_prune.plugin.quality)


@pytest.hookimpl(tryfirst=True)  # bad options stop the run before other plugins start
def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: take its own GPU before CUDA starts
        try:
            pin_worker(workerinput["workerid"], int(workerinput["workercount"]))
        except ValueError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
    validate_options(config)  # after pinning: checking --glu-device may start CUDA
    # registered here so --strict-markers runs also work with -p no:xdist
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker (per variant)")
    config.stash[BUILDS_KEY] = {}
    config.pluginmanager.register(BuildCounter(config.stash[BUILDS_KEY]), "glu-prune-builds")
    config.stash[CACHE_KEY] = VariantCache(device=config.getoption("--glu-device"),
                                           model_dir=config.getoption("--glu-models-dir"))
    try:
        config.stash[VARIANTS_KEY] = select_variants(
            parse_list(config.getoption("--glu-models")) or all_model_names(),
            parse_list(config.getoption("--glu-methods")) or ["maw"],
            parse_list(config.getoption("--glu-levels"), float),
            parse_list(config.getoption("--glu-round-to"), int) or [1])
    except (KeyError, ValueError) as exc:
        raise pytest.UsageError(f"glu-prune: {exc.args[0]}") from None
    if workerinput is None and getattr(config.option, "dist", None) == "loadgroup":
        slugs = [v.slug for v in config.stash[VARIANTS_KEY]]
        config.pluginmanager.register(LoadgroupGuard(slugs), "glu-prune-loadgroup-guard")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" not in metafunc.fixturenames:
        return
    variants = metafunc.config.stash[VARIANTS_KEY]
    extra = [name for name in PER_VARIANT_PARAMS if name in metafunc.fixturenames]
    group = pytest.mark.xdist_group  # one xdist group per variant, set at collection
    if not extra:
        metafunc.parametrize("variant_id", [pytest.param(v, id=v.slug, marks=group(v.slug))
                                            for v in variants])
        return
    (name,) = extra  # one extra axis per test keeps ids readable
    metafunc.parametrize(("variant_id", name), [
        pytest.param(v, value, id=f"{v.slug}-{suffix}", marks=group(v.slug))
        for v in variants for value, suffix in PER_VARIANT_PARAMS[name](metafunc, v)])


@pytest.fixture
def variant(variant_id: VariantId, request: pytest.FixtureRequest) -> BuiltVariant:
    """The pruned variant ``variant_id``, built once per process (skips when weights are absent)."""
    cache = request.config.stash[CACHE_KEY]
    before = cache.builds.get(variant_id.slug, 0)
    wrong_model = None
    try:
        # transformers' "Loading weights" bar and load chatter: only with pytest -v
        with quiet_libraries(verbose=request.config.getoption("verbose") > 0):
            built = cache.get(variant_id)
    except WeightsUnavailable as exc:
        if request.config.getoption("--glu-require-weights"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    except ArchitectureMismatch as exc:  # a wrong model, not a missing one: never a skip
        wrong_model = str(exc)
    if wrong_model is not None:  # failed outside the except: pytest would print it twice
        pytest.fail(wrong_model, pytrace=False)
    if cache.builds[variant_id.slug] > before:  # travels to the xdist controller
        event = f"{os.getpid()}:{cache.builds[variant_id.slug]}"  # one id per real build
        request.node.user_properties.append(("glu_build", (variant_id.slug, event)))
    return built


class BuildCounter:
    """Counts variant builds over all workers (each variant should be built once per run).

    Each build carries its own id (process, n-th build of that slug), so a report seen
    twice by the controller is not counted twice, while a real rebuild is.
    """

    def __init__(self, builds: dict[str, int]):
        self.builds = builds
        self._seen: set[tuple[str, str]] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == "glu_build" and tuple(value) not in self._seen:
                self._seen.add(tuple(value))
                self.builds[value[0]] = self.builds.get(value[0], 0) + 1


@pytest.fixture(scope="session")
def variant_cache(pytestconfig: pytest.Config) -> VariantCache:
    """The session's variant builder (for tests that count builds or clear memory)."""
    return pytestconfig.stash[CACHE_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each variant's tests together (their xdist group is set in generate_tests)."""
    models = all_model_names()

    def key(pair: tuple[int, pytest.Item]) -> tuple:
        index, item = pair
        vid = _variant_of(item)
        return (1, order_key(vid, models), index) if vid else (0, (), index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]
    check_selected_resources(config, items)


def check_selected_resources(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stop before any model is built when a selected benchmark cannot score here.

    lm-eval's ifeval fails inside scoring, after all generation, when nltk's punkt_tab
    data is missing; so check it up front, for models whose weights can be had (a model
    that will skip for missing weights never reaches scoring).
    """
    models_dir = config.getoption("--glu-models-dir")
    needs = {vid.model for item in items if (vid := _variant_of(item)) is not None
             and any(getattr(b, "task", None) == "ifeval" for b in _benchmarks_of(item))}
    if any(weights_obtainable(m, models_dir) for m in sorted(needs)):
        try:
            check_ifeval_resources()
        except PreflightError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None


def _benchmarks_of(item: pytest.Item) -> list[Any]:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return [params[p] for p in _quality.PARAM_BY_KIND.values() if p in params]


class LoadgroupGuard:
    """Controller-side check that ``--dist loadgroup`` really groups the suite by variant.

    xdist's workers tell the controller an item's group by appending ``@<group>`` to its
    node id; when a pytest/xdist pair breaks that (pytest-xdist issue 1386), a variant's
    tests spread over all workers and every worker builds every variant. Refuse such a
    run before any test starts instead of silently spending N times the GPU time.
    """

    def __init__(self, slugs: list[str]) -> None:
        self.slugs = slugs

    def ungrouped(self, nodeid: str) -> bool:
        """Whether ``nodeid`` is a variant's test that carries no xdist group suffix."""
        # imported here: importing a plugin module early stops pytest from rewriting it
        from glu_prune.plugin.results import plain_nodeid

        head, bracket, _ = nodeid.rpartition("]")
        if not bracket or plain_nodeid(nodeid) != nodeid:  # not parametrized, or grouped
            return False
        params = head.rpartition("[")[2]
        return any(params == s or params.startswith(s + "-") for s in self.slugs)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: only called when xdist runs
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        bad = next((nodeid for nodeid in ids if self.ungrouped(nodeid)), None)
        if bad is not None:
            import xdist

            raise pytest.UsageError(
                f"glu-prune: --dist loadgroup is not grouping tests by variant here (pytest "
                f"{pytest.__version__}, pytest-xdist {xdist.__version__}; pytest-xdist "
                f"issue 1386): {bad} came back without its '@<variant>' group suffix, so "
                f"every worker would build every variant. Install the versions glu-prune "
                f"pins (pytest<9.2) or run without -n.")


def _variant_of(item: pytest.Item) -> VariantId | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("variant_id") if callspec else None


# ---------------------------------------------------------------- evaluation (suite_eval)
PER_VARIANT_PARAMS.update(_quality.PER_VARIANT_PARAMS)  # accuracy_/perplexity_benchmark


@pytest.fixture
def glu_eval(request: pytest.FixtureRequest) -> _judge.Judge:
    """``glu_eval.check(variant, benchmark, kind)``: evaluate (once per variant) and judge
    against the baseline. Skips before the model is built when no baseline entry exists."""
    return _judge.judge_for(request)
