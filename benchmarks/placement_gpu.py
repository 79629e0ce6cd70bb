"""GPU check of variants spread over devices (issue 24), for a machine with a CUDA GPU.

    PYTHONPATH=. python benchmarks/placement_gpu.py

Places the tiny model on GPU 0 + CPU + disk and a random-weight Llama-3.2-1B shape on
GPU 0 + CPU (accelerate's device map, ``glu_prune.core.placement``): logits and generated
tokens against the unplaced model on the GPU (placed directly, built and placed by the
suite's variant cache, and streamed then placed by ``from_pretrained`` as ``--glu-stream``
does), the timers' synchronization of every placed
GPU, and NVML energy summed over the placement's GPUs. Prints one line per check.
"""

from __future__ import annotations

import copy
import tempfile
import time

import torch

from glu_prune.core.loading import load_model
from glu_prune.core.placement import Placement, place, placed_gpus
from glu_prune.core.variants import VariantCache, VariantId
from glu_prune.performance.energy import EnergyMeter, EnergyUnavailable
from glu_prune.performance.timing import fixed_length_config, generate, prefill, random_prompt


def _logits(model, ids):
    with torch.inference_mode():
        return model(ids).logits.float()


def tiny_checks(folder: str) -> None:
    """The tiny model (fp32) on GPU 0, CPU and disk: the same logits and tokens."""
    model, _ = load_model("tiny-llama", device="cuda", dtype=torch.float32)
    ids = random_prompt(2, 32, model.config.vocab_size, "cuda")
    placement = Placement("sequential", ((0, "2MB"), ("cpu", "2MB")), folder)
    placed = place(copy.deepcopy(model).to("cpu"), placement)
    print("tiny map:", sorted({str(v) for v in placed.hf_device_map.values()}),
          "gpus", placed_gpus(placed))
    diff = (_logits(placed, ids) - _logits(model, ids)).abs().max().item()
    config = fixed_length_config(model, 8)
    same = torch.equal(generate(placed, ids, config), generate(model, ids, config))
    print(f"tiny fp32: max |logit diff| {diff:.3g}, same 8 generated tokens: {same}")
    cache = VariantCache(device="cuda", dtype=torch.float32, placement=placement)
    plain = VariantCache(device="cuda", dtype=torch.float32)
    vid = VariantId("tiny-llama", "maw", 40)
    diff = (_logits(cache.get(vid).model, ids) - _logits(plain.get(vid).model, ids)).abs().max()
    print(f"tiny p40 built with placement vs on the GPU: max |logit diff| {diff.item():.3g}")
    streamed = VariantCache(device="cuda", dtype=torch.float32, placement=placement,
                            stream_dir=tempfile.mkdtemp(dir=folder))
    diff = (_logits(streamed.get(vid).model, ids) - _logits(plain.get(vid).model, ids)).abs()
    print(f"tiny p40 streamed (--glu-stream) and placed by from_pretrained vs on the GPU: "
          f"max |logit diff| {diff.max().item():.3g}")


def _median_time(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def real_shape_checks() -> None:
    """A 1B-shaped random model in bf16 with about a third on GPU 0, the rest CPU-offloaded."""
    model, _ = load_model("llama-3.2-1b", weights="random", device="cuda")
    ids = random_prompt(1, 512, model.config.vocab_size, "cuda")
    placed = place(copy.deepcopy(model).to("cpu"), Placement("sequential", ((0, "1GiB"),
                                                                              ("cpu", "20GiB"))))
    where = {}
    for v in placed.hf_device_map.values():
        where[str(v)] = where.get(str(v), 0) + 1
    diff = (_logits(placed, ids) - _logits(model, ids)).abs().max().item()
    one = _median_time(lambda: prefill(model, ids))
    spread = _median_time(lambda: prefill(placed, ids))
    print(f"1B bf16 map {where}: max |logit diff| {diff:.3g}; prefill@512 median "
          f"{one * 1e3:.1f} ms on one GPU, {spread * 1e3:.1f} ms placed (CPU layers streamed)")
    try:
        meter = EnergyMeter.open_all(list(placed_gpus(placed)))
    except EnergyUnavailable as exc:
        print("energy: unavailable:", exc)
        return
    window = meter.measure(lambda: prefill(placed, ids), min_seconds=3.0)
    print(f"energy over GPUs {meter.indices}: {window.joules:.1f} J in {window.seconds:.2f} s "
          f"({window.calls} calls, {window.watts:.0f} W, {window.per_call() / 512:.4f} J/token)")


if __name__ == "__main__":
    print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus",
          torch.cuda.device_count(), torch.cuda.get_device_name(0))
    with tempfile.TemporaryDirectory() as folder:
        tiny_checks(folder)
    real_shape_checks()
