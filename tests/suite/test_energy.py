"""Energy benchmarks: joules per token from NVML's total-energy counter (NVIDIA GPUs only).

Each window repeats the workload until it lasts ``MIN_WINDOW_S`` (the counter ticks about
every 100 ms), with the device synchronized at both ends. Idle power is measured once per
run; rows give gross and idle-corrected J/token and average power. One window per
variant: its ratio to the unpruned model's is shown as unpaired, without an interval.
Without an NVML GPU every test skips, before any model is built.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from glu_prune.performance.energy import MIN_WINDOW_S, joules_per_token, sharing_warning
from glu_prune.performance.stats import Row
from glu_prune.performance.timing import decode, prefill, random_prompt, start_decode

pytestmark = pytest.mark.energy


def _measure(benchmark: Any, meter: Any, workload: Any) -> Any:
    """One energy window, run through pytest-benchmark so --benchmark-only selects it."""
    workload()  # warm-up outside the window (allocator, kernels' first launch)
    return benchmark.pedantic(meter.measure, args=(workload,), rounds=1, warmup_rounds=0)


def _check_window(window: Any, e: dict[str, Any], idle: float) -> None:
    """What every energy window must show: long enough for the counter, a positive finite
    energy and power, and less energy above idle than in all."""
    assert window.seconds >= MIN_WINDOW_S, f"window of {window.seconds} s < {MIN_WINDOW_S} s"
    assert window.calls >= 1, window
    assert math.isfinite(window.joules) and window.joules > 0, window
    assert e["j_per_token"] > 0 and e["avg_power_w"] > 0, e
    if idle > 0:
        assert e["j_per_token_net"] < e["j_per_token"], (e, idle)


def _finish(ctx: Any, row: Row, built: Any, meter: Any, idle: float, window: Any,
            benchmark: Any, request: Any) -> None:
    sharing = sharing_warning(meter, meter.other_processes())  # the GPU may be shared by now
    row.extra.update({"idle_power_w": idle, "window_s": window.seconds, "calls": window.calls,
                      "gpu_shared": sharing})
    record = ctx.finish(row, built, benchmark, request.node)
    message = ctx.failure(record)
    if message:
        pytest.fail(message, pytrace=False)
    absent = ctx.absent(record)
    if absent:  # measured and recorded, but nothing to compare with: never a pass
        pytest.skip(absent)


def test_prefill_energy(energy_meter, perf_model, prompt_len, perf_context, benchmark, request):
    """J per prompt token of a batch-1 prefill of ``prompt_len`` tokens."""
    meter, idle = energy_meter
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(1, prompt_len, cfg.vocab_size, s.device)
    benchmark.group = f"energy-prefill@{prompt_len} {perf_model.variant.model}"
    window = _measure(benchmark, meter, lambda: prefill(perf_model.model, ids))
    e = joules_per_token(window, prompt_len, idle)
    _check_window(window, e, idle)
    row = Row(f"energy-prefill@{prompt_len}", "prefill_j_per_token", e["j_per_token"], "J/tok",
              ideal_speedup=perf_model.ideal_prefill(prompt_len),
              conditions={"prompt_len": prompt_len, "batch": 1},
              extra={"prefill_j_per_token_net": e["j_per_token_net"],
                     "avg_power_w": e["avg_power_w"]})
    _finish(perf_context, row, perf_model, meter, idle, window, benchmark, request)


def test_decode_energy(energy_meter, perf_model, perf_context, benchmark, request):
    """J per decoded token at batch 1: windows of decode steps alone (new tokens − 1 per
    call, each from a copy of one prefilled cache), so no prefill energy is subtracted."""
    meter, idle = energy_meter
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(1, s.decode_prompt_len, cfg.vocab_size, s.device)
    start, steps = start_decode(perf_model.model, ids), s.new_tokens - 1
    benchmark.group = f"energy-decode {perf_model.variant.model}"
    window = _measure(benchmark, meter, lambda: decode(*start.fresh(), steps))
    e = joules_per_token(window, steps, idle)
    _check_window(window, e, idle)
    row = Row("energy-decode", "decode_j_per_token", e["j_per_token"], "J/tok",
              ideal_speedup=perf_model.ideal_decode(),
              conditions={"prompt_len": s.decode_prompt_len, "batch": 1,
                          "new_tokens": s.new_tokens},
              extra={"decode_j_per_token_net": e["j_per_token_net"],
                     "avg_power_w": e["avg_power_w"]})
    _finish(perf_context, row, perf_model, meter, idle, window, benchmark, request)
