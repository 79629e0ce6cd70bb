"""pytest plugin part: latency and energy benchmarks (loaded by ``glu_prune.plugin``).

Models: --glu-models (default: tiny-llama, llama-3.2-1b); levels: --glu-levels/--glu-round-to
(default: glu_prune.performance.settings.PERF_LEVELS), the unpruned model always included. Logic lives in
glu_prune.performance, perf_baselines and energy; torch loads only when these tests are collected.
"""

from __future__ import annotations

from typing import Any

import pytest

from glu_prune.core.variants import parse_list

PERF_SETTINGS_KEY = pytest.StashKey[Any]()
PERF_CONTEXT_KEY = pytest.StashKey[Any]()
SERIAL_ONLY = ("glu-prune: latency/energy benchmarks must run serially (pytest-benchmark "
               "disables itself under xdist, and parallel runs share the device): run them "
               "without -n, e.g. `pytest -p no:xdist --benchmark-only`, or deselect them with "
               "-m 'not latency and not energy'")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    group.addoption("--glu-prompt-lens", default=None,
                    help="comma list of TTFT prompt lengths (default: 128,512,2048 on GPU, "
                         "128 on CPU)")
    group.addoption("--glu-new-tokens", type=int, default=None,
                    help="tokens generated per TPOT/throughput call, EOS ignored "
                         "(default: 64 on GPU, 4 on CPU)")
    group.addoption("--glu-perf-rounds", type=int, default=None,
                    help="timed rounds per latency benchmark, after warm-up rounds "
                         "(default: 10 after 2 on GPU, 9 after 1 on CPU; a speedup's 95-percent "
                         "interval needs 6 or more)")
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
    """The resolved latency/energy settings (``glu_prune.performance.settings.PerfSettings``), once per process."""
    if PERF_SETTINGS_KEY not in config.stash:
        from glu_prune.performance.settings import resolve_settings

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
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
        from glu_prune.performance.timing import mlp_block_id

        blocks = perf_settings(metafunc.config).mlp_blocks()
        metafunc.parametrize("mlp_variant", blocks, ids=[mlp_block_id(v) for v in blocks])


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's (trylast) configure, whose own error is less helpful.
    if config.getoption("benchmark_only", False) and (
            config.getoption("dist", "no") != "no"):
        raise pytest.UsageError(SERIAL_ONLY)


@pytest.fixture(scope="session")
def perf_context(pytestconfig: pytest.Config) -> Any:
    """Session state of latency/energy tests (``glu_prune.plugin.perf_session.PerfContext``).

    On an xdist worker it fails every latency/energy test with the serial-only message
    (raising from a worker's collection hook would surface as an INTERNALERROR instead).
    """
    import os
    from pathlib import Path

    from glu_prune.plugin.perf_session import PerfContext
    from glu_prune.performance.models import PerfModels
    from glu_prune.judging.speed import PerfBaselines, describe_device

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

    from glu_prune.performance.energy import EnergyMeter, EnergyUnavailable, sharing_warning

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
    """The perf variant ``request.param`` built (``glu_prune.performance.models.PerfModel``)."""
    return perf_context.models.get(request.param)


@pytest.fixture(scope="session")
def energy_meter(perf_context: Any) -> Any:
    """``(meter, idle_watts)``; idle power measured once per run; skips without NVML."""
    if perf_context.energy is None:
        pytest.skip(perf_context.energy_unavailable)
    return perf_context.energy, perf_context.energy.idle_watts()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    ctx = config.stash.get(PERF_CONTEXT_KEY, None)
    if ctx is None or not ctx.records:
        return
    from glu_prune.plugin.perf_session import summary_lines

    terminalreporter.section("glu-prune latency/energy")
    for line in summary_lines(ctx):
        terminalreporter.write_line(line)
