"""The latency and energy suite in pytest: its settings, parametrization, session context,
energy meter and terminal section (``PerfSuite``; the plugin's hooks and fixtures call it).

Models: --glu-models (default: tiny-llama, llama-3.2-1b); levels: --glu-levels/--glu-round-to
(default: glu_prune.performance.settings.PERF_LEVELS), the unpruned model always included.
Logic lives in glu_prune.performance and glu_prune.judging.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from glu_prune.judging import JudgingError, SpeedBaselines, describe_device
from glu_prune.performance.energy import EnergyMeter, EnergyUnavailable, sharing_warning
from glu_prune.performance.models import PerfModels
from glu_prune.performance.settings import PerfSettings, resolve_settings
from glu_prune.performance.timing import mlp_block_id
from glu_prune.plugin.options import Options
from glu_prune.plugin.perf_session import PerfContext, summary_lines

SERIAL_ONLY = ("glu-prune: latency/energy benchmarks must run serially (pytest-benchmark "
               "disables itself under xdist, and parallel runs share the device): run them "
               "without -n, e.g. `pytest -p no:xdist --benchmark-only`, or deselect them with "
               "-m 'not latency and not energy'")


class PerfSuite:
    """Latency/energy state of one pytest process: settings resolved on first use, the
    session's ``PerfContext`` once a latency/energy test needs it."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self._settings: PerfSettings | None = None
        self.ctx: PerfContext | None = None

    @staticmethod
    def refuse_xdist(config: pytest.Config) -> None:
        """``--benchmark-only`` under ``-n``: stop before pytest-benchmark's (trylast)
        configure, whose own error is less helpful."""
        if config.getoption("benchmark_only", False) and (
                config.getoption("dist", "no") != "no"):
            raise pytest.UsageError(SERIAL_ONLY)

    def settings(self) -> PerfSettings:
        """The resolved latency/energy settings, once per process."""
        if self._settings is None:
            o = self.opts
            try:
                self._settings = resolve_settings(
                    device=o.device, dtype=o.perf_dtype, models=o.models, levels=o.levels,
                    round_tos=o.round_tos, layers=o.perf_layers, prompt_lens=o.prompt_lens,
                    new_tokens=o.new_tokens, rounds=o.perf_rounds, tolerance=o.perf_tolerance,
                    shapes=o.shapes.shapes)
                self._settings = replace(self._settings, placement=o.placement)
            except (KeyError, ValueError) as exc:
                raise pytest.UsageError(f"glu-prune: {exc.args[0]}") from None
        return self._settings

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``perf_model`` (x ``prompt_len``) and ``mlp_variant``; ids carry the slug."""
        names = metafunc.fixturenames
        if "perf_model" in names:
            s = self.settings()
            if "prompt_len" in names:
                pairs = [(v, n) for v in s.variants for n in s.prompt_lens_for(v.model)]
                metafunc.parametrize(("perf_model", "prompt_len"), pairs,
                                     indirect=["perf_model"],
                                     ids=[f"{v.slug}-L{n}" for v, n in pairs], scope="module")
            else:
                metafunc.parametrize("perf_model", s.variants, indirect=True,
                                     ids=[v.slug for v in s.variants], scope="module")
        if "mlp_variant" in names:
            blocks = self.settings().mlp_blocks()
            metafunc.parametrize("mlp_variant", blocks, ids=[mlp_block_id(v) for v in blocks])

    def context(self) -> PerfContext:
        """The session's ``PerfContext`` (the ``perf_context`` fixture).

        On an xdist worker it fails every latency/energy test with the serial-only message
        (raising from a worker's collection hook would surface as an INTERNALERROR instead).
        """
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.fail(SERIAL_ONLY, pytrace=False)
        s, o = self.settings(), self.opts
        device = describe_device(s.device, s.dtype, o.device_name)
        try:
            baselines = SpeedBaselines.load(Path(o.baselines_dir) / "perf", device,
                                            tolerance=s.tolerance, update=o.update_baselines)
        except JudgingError as exc:  # a bad or old-format file: one line, every speed test
            pytest.fail(str(exc), pytrace=False)
        models = PerfModels(s.device, s.torch_dtype, o.models_dir, s.placement, o.stream_dir)
        ctx = PerfContext(s, models,
                          baselines, require_baselines=o.require_baselines)
        if s.on_gpu:
            _attach_energy_meter(ctx)
        self.ctx = ctx
        return ctx

    @staticmethod
    def energy_meter(ctx: PerfContext) -> tuple[EnergyMeter, float]:
        """``(meter, idle_watts)``; idle power measured once per run; skips without NVML."""
        if ctx.energy is None:
            pytest.skip(ctx.energy_unavailable)
        return ctx.energy, ctx.energy.idle_watts()

    def summary(self, terminalreporter: Any) -> None:
        """The ``glu-prune latency/energy`` terminal section (when something was measured)."""
        if self.ctx is None or not self.ctx.records:
            return
        terminalreporter.section("glu-prune latency/energy")
        for line in summary_lines(self.ctx):
            terminalreporter.write_line(line)


def _metered_gpus(s: PerfSettings) -> list[int]:
    """The GPUs whose energy counts: the device's, or under a placement every GPU it may
    use (those --glu-max-memory names, else all visible), summed."""
    if s.placement is None:
        return [torch.device(s.device).index or 0]
    gpus = s.placement.gpus
    return list(range(torch.cuda.device_count())) if gpus is None else list(gpus)


def _attach_energy_meter(ctx: PerfContext) -> None:
    try:
        ctx.energy = EnergyMeter.open_all(_metered_gpus(ctx.settings))
    except EnergyUnavailable as exc:
        ctx.energy_unavailable = str(exc)
        return
    warning = sharing_warning(ctx.energy, ctx.energy.other_processes(
        self_on_gpu=torch.cuda.is_initialized()))
    if warning:
        ctx.notes.append(warning)
        warnings.warn(warning)
