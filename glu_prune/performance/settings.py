"""Latency/energy settings: defaults per device, the perf variants and levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from glu_prune.catalog.models import get_model_spec
from glu_prune.core.arithmetic import check_level
from glu_prune.core.matching import shape_variants
from glu_prune.core.placement import Placement
from glu_prune.core.variants import VariantId


# ---------------------------------------------------------------- defaults

DEFAULT_PERF_MODELS = ("tiny-llama", "llama-3.2-1b")  # 3B only when asked (--glu-models)
# (pct, round_to) per model. 40 % is the headline level and its rounded twin shows what an
# unaligned size costs (1B: 4916 vs 4864); 10 % keeps 7373, the least aligned size.
DEFAULT_PERF_LEVELS: tuple[tuple[float, int], ...] = ((0, 1), (10, 1), (40, 1), (40, 128))
PERF_LEVELS: dict[str, tuple[tuple[float, int], ...]] = {
    # intermediate 512: 40 % keeps 308; r64 gives 320 (r128 would give 256, i.e. 50 %)
    "tiny-llama": ((0, 1), (40, 1), (40, 64)),
    "tiny-llama-instruct": ((0, 1), (40, 1), (40, 64)),
}
GPU_PROMPT_LENS = (128, 512, 2048)
CPU_PROMPT_LENS = (128,)  # a 2-layer 1B prefill of 512 tokens takes seconds on 2 cores
GPU_NEW_TOKENS, CPU_NEW_TOKENS = 64, 4  # CPU: a 1B-shaped decode step reads ~1.5 GB
GPU_DECODE_PROMPT_LEN, CPU_DECODE_PROMPT_LEN = 128, 32
# (rounds, warm-up rounds). A 95 % interval of a median needs at least 6 paired rounds
# (with 5 even min..max covers it only 94 % of the time); 9 rounds let the interval drop
# the most extreme pair on each side, so one noisy round does not decide it.
GPU_ROUNDS, CPU_ROUNDS = (10, 2), (9, 1)
CONFIDENCE = 0.95  # of the speedup's interval
CPU_PERF_LAYERS = 2  # real shapes on CPU: 2 decoder layers keep CI within minutes
THROUGHPUT_BATCH = 8
MLP_BLOCK_TOKENS = 512
# A toy model's lone MLP (the tiny model's: hidden 128) runs in microseconds: timing it
# measures call overhead, not the MLP; any real model (Qwen2.5-0.5B's 896 and up) is timed.
MLP_BLOCK_MIN_HIDDEN = 512
MLP_BLOCK_LEVELS: tuple[tuple[float, int], ...] = ((0, 1), (10, 1), (10, 128))  # 8192/7373/7424
PERF_METHOD = "maw"  # speed does not depend on which neurons go, only on how many
# Which layers a depth variant removes does not change its cost either: every decoder
# layer of a supported family is the same size (core.matching refuses models where they
# differ), so depth variants are timed once per layer count, removing the last ones.
DEPTH_SPEED_METHOD = "last"


# ---------------------------------------------------------------- settings and variants


@dataclass(frozen=True)
class PerfVariant:
    """One model shape, depth and pruning level to time (weights are an implementation detail)."""

    model: str
    pct: float
    round_to: int = 1
    method: str = PERF_METHOD
    layers: int = 0  # decoder layers actually run (of the unpruned model)
    full_layers: int = 0
    shape: str = "width"  # VariantId.shape: width, global, depth
    removed: int = 0  # decoder layers a depth variant removes from the full model

    @property
    def id(self) -> VariantId:
        """The suite's variant identity (the depth run is a perf-only detail)."""
        return VariantId(self.model, self.method, self.pct, self.round_to, shape=self.shape,
                         layers=self.removed)

    @property
    def reference(self) -> PerfVariant:
        """The unpruned model of the same shape and run depth (speedups are against it)."""
        return PerfVariant(self.model, 0, 1, PERF_METHOD if self.shape == "depth" else
                           self.method, self.layers, self.full_layers)

    @property
    def unmeasurable(self) -> str:
        """Why this variant cannot be timed in this run ("" when it can): a depth variant
        removes layers of the full model, so a run of fewer layers cannot represent it."""
        if self.shape == "depth" and self.layers < self.full_layers:
            return (f"{self.slug}: a depth variant is timed at full depth only; this run "
                    f"times {self.layers} of {self.full_layers} layers (pass "
                    f"--glu-perf-layers {self.full_layers})")
        return ""

    @property
    def slug(self) -> str:
        return self.id.slug

    @property
    def key(self) -> str:
        """Baseline key: the slug plus the depth run (reduced depths are other models)."""
        return f"{self.slug}-{self.layers}l"

    @property
    def is_level_zero(self) -> bool:
        return self.id.is_base

    @property
    def level_zero_group(self) -> tuple[str, int]:
        return (self.model, self.layers)


@dataclass(frozen=True)
class PerfSettings:
    """Resolved latency/energy options (device-dependent defaults filled in)."""

    device: str
    dtype: str
    variants: tuple[PerfVariant, ...]
    prompt_lens: tuple[int, ...]
    new_tokens: int
    decode_prompt_len: int
    rounds: int
    warmup: int
    tolerance: float
    batch: int = THROUGHPUT_BATCH
    placement: Placement | None = None  # spread over devices (None: all on ``device``)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def prompt_lens_for(self, model: str) -> tuple[int, ...]:
        """Prompt lengths the model's positions allow (tiny-llama stops at 1024)."""
        limit = int(get_model_spec(model).architecture.get("max_position_embeddings", 1 << 30))
        return tuple(n for n in self.prompt_lens if n <= limit)

    def mlp_blocks(self) -> list[PerfVariant]:
        """Lone-MLP-block variants of every model in the run but toy ones: unpruned, 10 %,
        10 % aligned to 128 (8192 / 7373 / 7424 for Llama-3.2, 4864 / 4378 / 4352 for
        Qwen2.5-0.5B), each in the model's own family and shape."""
        models = dict.fromkeys(v.model for v in self.variants
                               if get_model_spec(v.model).hidden_size >= MLP_BLOCK_MIN_HIDDEN)
        # One block: "layers" 1 keeps its baseline key apart from the whole model's.
        return [PerfVariant(m, pct, r, layers=1, full_layers=1)
                for m in models for pct, r in MLP_BLOCK_LEVELS]


def resolve_layers(model: str, layers: int | None, device: str) -> int:
    """Decoder layers to run: ``layers`` (capped at full depth), else full on GPU and
    ``CPU_PERF_LAYERS`` for real shapes on CPU (the tiny model always runs whole)."""
    full = int(get_model_spec(model).architecture["num_hidden_layers"])
    if layers is not None:
        return min(layers, full)
    if device.startswith("cuda") or full <= 4:
        return full
    return min(CPU_PERF_LAYERS, full)


def level_pairs(model: str, levels: Sequence[float] | None,
                round_tos: Sequence[int] | None) -> list[tuple[float, int]]:
    """(pct, round_to) rows for ``model``: ``PERF_LEVELS`` unless levels or roundings are
    given; the unpruned model is always first (speedups are measured against it)."""
    default = PERF_LEVELS.get(model, DEFAULT_PERF_LEVELS)
    if levels is None and round_tos in (None, [1], (1,)):
        rows = list(default)
    else:
        pcts = levels if levels is not None else sorted({p for p, _ in default})
        rows = [(p, r) for p in pcts for r in (round_tos or [1]) if p > 0 or r == 1]
    rows = sorted(set(rows) | {(0, 1)}, key=lambda pr: (pr[0], pr[1]))
    for pct, r in rows:
        check_level(pct, r)  # pct in [0, 100), round_to >= 1: sizes are checked per model
    return rows


def perf_variants(models: Sequence[str], levels: Sequence[float] | None,
                  round_tos: Sequence[int] | None, layers: int | None, device: str,
                  method: str = PERF_METHOD, shapes: Sequence[str] = ("width",)
                  ) -> list[PerfVariant]:
    """The perf matrix in run order: per model, unpruned first; shapes other than width
    matched to each width level at equal parameters, as the quality suite matches them."""
    out = []
    for model in models:
        full = int(get_model_spec(model).architecture["num_hidden_layers"])
        depth = resolve_layers(model, layers, device)
        width = [VariantId(model, method, pct, r)
                 for pct, r in level_pairs(model, levels, round_tos)]
        if tuple(shapes) != ("width",):
            width = shape_variants(width, shapes, (DEPTH_SPEED_METHOD,), _no_calibration)
        out += [PerfVariant(model, v.pct, v.round_to, v.method, depth, full, v.shape, v.layers)
                for v in width]
    return out


def _no_calibration(model: str) -> Any:
    raise AssertionError(f"{model}: perf variants are weight-only; nothing calibrates")


def resolve_settings(*, device: str | None = None, dtype: str | None = None,
                     models: Sequence[str] | None = None,
                     levels: Sequence[float] | None = None,
                     round_tos: Sequence[int] | None = None, layers: int | None = None,
                     prompt_lens: Sequence[int] | None = None,
                     new_tokens: int | None = None, rounds: int | None = None,
                     tolerance: float = 0.10, method: str = PERF_METHOD,
                     shapes: Sequence[str] = ("width",)) -> PerfSettings:
    """Fill unset values with the device's defaults.

    The values come checked (the plugin's ``Options``: dtype a floating torch dtype,
    counts >= 1, new tokens >= 2 as TPOT divides by new tokens - 1, tolerance finite and
    >= 0); only an unknown model name fails here (``KeyError``, with the known list).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    dtype = dtype or ("bfloat16" if gpu else "float32")  # bf16 matmuls are slow on CPU
    lens = tuple(prompt_lens or (GPU_PROMPT_LENS if gpu else CPU_PROMPT_LENS))
    new = new_tokens if new_tokens is not None else (GPU_NEW_TOKENS if gpu else CPU_NEW_TOKENS)
    default_rounds, warmup = GPU_ROUNDS if gpu else CPU_ROUNDS
    variants = perf_variants(models or DEFAULT_PERF_MODELS, levels, round_tos, layers, device,
                             method, shapes)
    return PerfSettings(device, dtype, tuple(variants), lens, new,
                        GPU_DECODE_PROMPT_LEN if gpu else CPU_DECODE_PROMPT_LEN,
                        rounds or default_rounds, warmup, float(tolerance))
