"""The glu-prune pytest plugin: options, the variant fixture and ordering hooks.

Thin by design: it reads options and hands off to ``glu_prune.variants`` (building),
``glu_prune.evaluate``/``baselines`` (judging) and ``glu_prune.report`` (showing).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from glu_prune.gpus import pin_worker
from glu_prune.models import MODELS_DIR_ENV, WeightsUnavailable
from glu_prune.variants import (BuiltVariant, VariantCache, VariantId, all_model_names,
                                order_key, parse_list, select_variants)

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
    # --- evaluation (issue 4) ---
    from glu_prune.suite_eval import add_options as add_eval_options

    add_eval_options(group)  # --glu-limit, -batch-size, -chat-template, -update-baselines, ...
    # --- end evaluation (issue 4) ---
    # --- latency/energy (issue 6) ---
    _add_latency_energy_options(group)  # --glu-prompt-lens, --glu-perf-*, ... (defined below)
    # --- end latency/energy (issue 6) ---
    # --- results (issue 5) ---
    _add_results_options(group)  # --glu-report, --glu-plots (defined below)
    # --- end results (issue 5) ---


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: take its own GPU before CUDA starts
        try:
            pin_worker(workerinput["workerid"], int(workerinput["workercount"]))
        except ValueError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" not in metafunc.fixturenames:
        return
    variants = metafunc.config.stash[VARIANTS_KEY]
    extra = [name for name in PER_VARIANT_PARAMS if name in metafunc.fixturenames]
    if not extra:
        metafunc.parametrize("variant_id", variants, ids=[v.slug for v in variants])
        return
    (name,) = extra  # one extra axis per test keeps ids readable
    pairs = [(v, value, f"{v.slug}-{suffix}") for v in variants
             for value, suffix in PER_VARIANT_PARAMS[name](metafunc, v)]
    metafunc.parametrize(("variant_id", name), [(v, x) for v, x, _ in pairs],
                         ids=[i for _, _, i in pairs])


@pytest.fixture
def variant(variant_id: VariantId, request: pytest.FixtureRequest) -> BuiltVariant:
    """The pruned variant ``variant_id``, built once per process (skips when weights are absent)."""
    cache = request.config.stash[CACHE_KEY]
    before = cache.builds.get(variant_id.slug, 0)
    try:
        built = cache.get(variant_id)
    except WeightsUnavailable as exc:
        if request.config.getoption("--glu-require-weights"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    if cache.builds[variant_id.slug] > before:  # travels to the xdist controller
        request.node.user_properties.append(("glu_build", variant_id.slug))
    return built


class BuildCounter:
    """Counts variant builds over all workers (each variant should be built once per run)."""

    def __init__(self, builds: dict[str, int]):
        self.builds = builds

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "setup":  # setup's properties reappear in the call report
            return
        for name, slug in report.user_properties:
            if name == "glu_build":
                self.builds[slug] = self.builds.get(slug, 0) + 1


@pytest.fixture(scope="session")
def variant_cache(pytestconfig: pytest.Config) -> VariantCache:
    """The session's variant builder (for tests that count builds or clear memory)."""
    return pytestconfig.stash[CACHE_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each variant's tests together and put them in one xdist group."""
    models = all_model_names()

    def key(pair: tuple[int, pytest.Item]) -> tuple:
        index, item = pair
        vid = _variant_of(item)
        return (1, order_key(vid, models), index) if vid else (0, (), index)

    for item in items:
        vid = _variant_of(item)
        if vid is not None:
            item.add_marker(pytest.mark.xdist_group(vid.slug))
    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def _variant_of(item: pytest.Item) -> VariantId | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("variant_id") if callspec else None


# --- evaluation (issue 4) ---
from glu_prune import suite_eval as _suite_eval  # noqa: E402  (light: no torch, no lm-eval)

PER_VARIANT_PARAMS.update(_suite_eval.PER_VARIANT_PARAMS)  # accuracy_/perplexity_benchmark


@pytest.fixture
def glu_eval(request: pytest.FixtureRequest) -> _suite_eval.Judge:
    """``glu_eval.check(variant, benchmark, kind)``: evaluate (once per variant) and judge
    against the baseline. Skips before the model is built when no baseline entry exists."""
    return _suite_eval.judge_for(request)
# --- end evaluation (issue 4) ---


# --- latency/energy (issue 6) ---
# Models: --glu-models (default: tiny-llama, llama-3.2-1b); levels: --glu-levels/--glu-round-to
# (default: glu_prune.perf.PERF_LEVELS), the unpruned model always included. Logic lives in
# glu_prune.perf, perf_baselines and energy; torch loads only when these tests are collected.
# Hooks use ``specname`` so they sit beside other sections' hooks of the same name.
PERF_SETTINGS_KEY = pytest.StashKey[Any]()
PERF_CONTEXT_KEY = pytest.StashKey[Any]()
SERIAL_ONLY = ("glu-prune: latency/energy benchmarks must run serially (pytest-benchmark "
               "disables itself under xdist, and parallel runs share the device): run them "
               "without -n, e.g. `pytest -p no:xdist --benchmark-only`, or deselect them with "
               "-m 'not latency and not energy'")


def _add_latency_energy_options(group: Any) -> None:
    group.addoption("--glu-prompt-lens", default=None,
                    help="comma list of TTFT prompt lengths (default: 128,512,2048 on GPU, "
                         "128 on CPU)")
    group.addoption("--glu-new-tokens", type=int, default=None,
                    help="tokens generated per TPOT/throughput call, EOS ignored "
                         "(default: 64 on GPU, 4 on CPU)")
    group.addoption("--glu-perf-rounds", type=int, default=None,
                    help="timed rounds per latency benchmark, after warm-up rounds "
                         "(default: 10 after 2 on GPU, 3 after 1 on CPU)")
    group.addoption("--glu-perf-layers", type=int, default=None,
                    help="decoder layers of real model shapes in latency/energy runs "
                         "(default: all on GPU, 2 on CPU; tiny-llama always whole)")
    group.addoption("--glu-perf-dtype", default=None,
                    help="dtype of latency/energy runs (default: bfloat16 on GPU, float32 on CPU)")
    group.addoption("--glu-perf-tolerance", type=float, default=0.10,
                    help="relative regression allowed against this device's perf baseline "
                         "(default: 0.1)")
    group.addoption("--glu-device-name", default=None,
                    help="device name keying baselines/perf/<slug>.json "
                         "(default: the detected GPU or CPU model name)")


def perf_settings(config: pytest.Config) -> Any:
    """The resolved latency/energy settings (``glu_prune.perf.PerfSettings``), once per process."""
    if PERF_SETTINGS_KEY not in config.stash:
        from glu_prune.perf import resolve_settings

        try:
            config.stash[PERF_SETTINGS_KEY] = resolve_settings(
                device=config.getoption("--glu-device"),
                dtype=config.getoption("--glu-perf-dtype"),
                models=parse_list(config.getoption("--glu-models")),
                levels=parse_list(config.getoption("--glu-levels"), float),
                round_tos=parse_list(config.getoption("--glu-round-to"), int),
                layers=config.getoption("--glu-perf-layers"),
                prompt_lens=parse_list(config.getoption("--glu-prompt-lens"), int),
                new_tokens=config.getoption("--glu-new-tokens"),
                rounds=config.getoption("--glu-perf-rounds"),
                tolerance=config.getoption("--glu-perf-tolerance"))
        except (KeyError, ValueError) as exc:
            raise pytest.UsageError(f"glu-prune: {exc.args[0]}") from None
    return config.stash[PERF_SETTINGS_KEY]


@pytest.hookimpl(specname="pytest_generate_tests")
def pytest_generate_tests_latency_energy(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``perf_model`` (x ``prompt_len``) and ``mlp_variant``; ids carry the slug."""
    names = metafunc.fixturenames
    if "perf_model" in names:
        s = perf_settings(metafunc.config)
        if "prompt_len" in names:
            pairs = [(v, n) for v in s.variants for n in s.prompt_lens_for(v.model)]
            metafunc.parametrize(("perf_model", "prompt_len"), pairs, indirect=["perf_model"],
                                 ids=[f"{v.slug}-L{n}" for v, n in pairs], scope="module")
        else:
            metafunc.parametrize("perf_model", s.variants, indirect=True,
                                 ids=[v.slug for v in s.variants], scope="module")
    if "mlp_variant" in names:
        from glu_prune.perf import mlp_block_id

        blocks = perf_settings(metafunc.config).mlp_blocks()
        metafunc.parametrize("mlp_variant", blocks, ids=[mlp_block_id(v) for v in blocks])


@pytest.hookimpl(specname="pytest_configure")
def pytest_configure_latency_energy(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's (trylast) configure, whose own error is less helpful.
    if config.getoption("benchmark_only", False) and (
            config.getoption("dist", "no") != "no"):
        raise pytest.UsageError(SERIAL_ONLY)


@pytest.fixture(scope="session")
def perf_context(pytestconfig: pytest.Config) -> Any:
    """Session state of latency/energy tests (``glu_prune.perf.PerfContext``).

    On an xdist worker it fails every latency/energy test with the serial-only message
    (raising from a worker's collection hook would surface as an INTERNALERROR instead).
    """
    import os
    from pathlib import Path

    from glu_prune.perf import PerfContext, PerfModels
    from glu_prune.perf_baselines import PerfBaselines, describe_device

    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail(SERIAL_ONLY, pytrace=False)
    s = perf_settings(pytestconfig)
    root = (pytestconfig.getoption("--glu-baselines-dir", None)
            or pytestconfig.rootpath / "baselines")
    device = describe_device(s.device, s.dtype, pytestconfig.getoption("--glu-device-name"))
    baselines = PerfBaselines.load(Path(root) / "perf", device, tolerance=s.tolerance,
                                   update=pytestconfig.getoption("--glu-update-baselines", False))
    ctx = PerfContext(s, PerfModels(s.device, s.torch_dtype,
                                    pytestconfig.getoption("--glu-models-dir")), baselines)
    if s.on_gpu:
        _attach_energy_meter(ctx)
    pytestconfig.stash[PERF_CONTEXT_KEY] = ctx
    return ctx


def _attach_energy_meter(ctx: Any) -> None:
    import warnings

    import torch

    from glu_prune.energy import EnergyMeter, EnergyUnavailable, sharing_warning

    try:
        ctx.energy = EnergyMeter.open(torch.device(ctx.settings.device).index or 0)
    except EnergyUnavailable as exc:
        ctx.energy_unavailable = str(exc)
        return
    warning = sharing_warning(ctx.energy, ctx.energy.other_processes(
        self_on_gpu=torch.cuda.is_initialized()))
    if warning:
        ctx.notes.append(warning)
        warnings.warn(warning)


@pytest.fixture(scope="module")
def perf_model(request: pytest.FixtureRequest, perf_context: Any) -> Any:
    """The perf variant ``request.param`` built (``glu_prune.perf.PerfModel``)."""
    return perf_context.models.get(request.param)


@pytest.fixture(scope="session")
def energy_meter(perf_context: Any) -> Any:
    """``(meter, idle_watts)``; idle power measured once per run; skips without NVML."""
    if perf_context.energy is None:
        pytest.skip(perf_context.energy_unavailable)
    return perf_context.energy, perf_context.energy.idle_watts()


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_latency_energy(terminalreporter: Any, config: pytest.Config) -> None:
    ctx = config.stash.get(PERF_CONTEXT_KEY, None)
    if ctx is None or not ctx.records:
        return
    from glu_prune.perf import summary_lines

    terminalreporter.section("glu-prune latency/energy")
    for line in summary_lines(ctx):
        terminalreporter.write_line(line)
# --- end latency/energy (issue 6) ---


# --- results (issue 5) ---
# Every suite record travels in report.user_properties (so also from xdist workers); the
# controller keeps them and writes results/results.{json,md} at the end. Logic: glu_prune.report.


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
            self.raw[report.nodeid] = found

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pathlib import Path

        from glu_prune.report import finish_run
        from glu_prune.report_io import environment

        opt = self.config.option
        run = {"args": list(self.config.invocation_params.args), "exitstatus": int(exitstatus),
               "workers": getattr(opt, "numprocesses", None),
               "options": {k: v for k, v in sorted(vars(opt).items()) if k.startswith("glu_")},
               "environment": environment(self.config.rootpath)}
        out = Path(self.config.invocation_params.dir, self.config.getoption("--glu-report"))
        self.lines = finish_run(self.raw, out, run, plots=self.config.getoption("--glu-plots"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("glu-prune results")
        for line in self.lines:
            terminalreporter.write_line(line)


RESULTS_KEY = pytest.StashKey[_Results]()


def _add_results_options(group: Any) -> None:
    group.addoption("--glu-report", default="results", metavar="DIR",
                    help="folder for results.json and results.md, written when a test "
                         "recorded numbers (default: results)")
    group.addoption("--glu-plots", action="store_true", default=False,
                    help="also write PNG charts into the --glu-report folder; needs "
                         "matplotlib, the [plots] extra (default: off)")


@pytest.hookimpl(specname="pytest_configure")
def pytest_configure_results(config: pytest.Config) -> None:
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
# --- end results (issue 5) ---
