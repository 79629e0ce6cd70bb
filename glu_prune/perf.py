"""Prefill (TTFT), decode (TPOT) and batch-throughput timing; FLOP- and byte-ideal speedups.

Every timed call synchronizes the device inside itself, so a wall-clock timer around it
(pytest-benchmark's) measures the work, not the launch. Speed does not depend on weight
values, so models without local weights run on random weights of their exact shape, and
every record says which.

Speedups are measured side by side: each round of a pruned variant is preceded by a
round of its unpruned reference (A B A B ... in one benchmark session), so drift and the
neighbours' load hit both alike; the speedup is the median of the paired rounds' ratios,
with a distribution-free confidence interval of that median.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from glu_prune.models import get_model_spec, make_config
from glu_prune.perf_baselines import PerfBaselines
from glu_prune.prune import (PruneReport, check_level, decode_weight_bytes, kept_count,
                             prefill_flops)
from glu_prune.variants import VariantCache, VariantId

LOG = logging.getLogger(__name__)

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
MLP_BLOCK_LEVELS: tuple[tuple[float, int], ...] = ((0, 1), (10, 1), (10, 128))  # 8192/7373/7424


# ---------------------------------------------------------------- settings and variants


@dataclass(frozen=True)
class PerfVariant:
    """One model shape, depth and pruning level to time (weights are an implementation detail)."""

    model: str
    pct: float
    round_to: int = 1
    method: str = "maw"
    layers: int = 0  # decoder layers actually run
    full_layers: int = 0

    @property
    def id(self) -> VariantId:
        """The suite's variant identity (the depth is a perf-only detail)."""
        return VariantId(self.model, self.method, self.pct, self.round_to)

    @property
    def slug(self) -> str:
        return self.id.slug

    @property
    def key(self) -> str:
        """Baseline key: the slug plus the depth run (reduced depths are other models)."""
        return f"{self.slug}-{self.layers}l"

    @property
    def is_reference(self) -> bool:
        return self.pct == 0

    @property
    def reference_group(self) -> tuple[str, int]:
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
        """Lone-MLP-block variants (8192 / 7373 / 7424 for Llama shapes), real shapes only."""
        models = dict.fromkeys(v.model for v in self.variants
                               if get_model_spec(v.model).hidden_size >= 1024)
        # One block: "layers" 1 keeps its baseline key apart from the whole model's.
        return [PerfVariant(m, pct, r, layers=1, full_layers=1)
                for m in models for pct, r in MLP_BLOCK_LEVELS]


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def resolve_layers(model: str, layers: int | None, device: str) -> int:
    """Decoder layers to run: ``layers`` (capped at full depth), else full on GPU and
    ``CPU_PERF_LAYERS`` for real shapes on CPU (the tiny model always runs whole)."""
    full = int(get_model_spec(model).architecture["num_hidden_layers"])
    if layers is not None:
        return min(_positive("--glu-perf-layers", layers), full)
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
                  method: str = "maw") -> list[PerfVariant]:
    """The perf matrix in run order: per model, unpruned first."""
    out = []
    for model in models:
        full = int(get_model_spec(model).architecture["num_hidden_layers"])
        depth = resolve_layers(model, layers, device)
        out += [PerfVariant(model, pct, r, method, depth, full)
                for pct, r in level_pairs(model, levels, round_tos)]
    return out


def resolve_settings(*, device: str | None = None, dtype: str | None = None,
                     models: Sequence[str] | None = None,
                     levels: Sequence[float] | None = None,
                     round_tos: Sequence[int] | None = None, layers: int | None = None,
                     prompt_lens: Sequence[int] | None = None,
                     new_tokens: int | None = None, rounds: int | None = None,
                     tolerance: float = 0.10, method: str = "maw") -> PerfSettings:
    """Fill unset options with device defaults and check every value."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    dtype = dtype or ("bfloat16" if gpu else "float32")  # bf16 matmuls are slow on CPU
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"--glu-perf-dtype must be a torch dtype name such as bfloat16, "
                         f"float16 or float32, got {dtype!r}")
    lens = tuple(prompt_lens or (GPU_PROMPT_LENS if gpu else CPU_PROMPT_LENS))
    for n in lens:
        _positive("--glu-prompt-lens entries", n)
    new = new_tokens if new_tokens is not None else (GPU_NEW_TOKENS if gpu else CPU_NEW_TOKENS)
    if _positive("--glu-new-tokens", new) < 2:
        raise ValueError(f"--glu-new-tokens must be >= 2 (TPOT divides by new tokens - 1), "
                         f"got {new}")
    default_rounds, warmup = GPU_ROUNDS if gpu else CPU_ROUNDS
    if not tolerance >= 0:
        raise ValueError(f"--glu-perf-tolerance must be >= 0, got {tolerance!r}")
    for model in models or DEFAULT_PERF_MODELS:
        get_model_spec(model)  # unknown names fail here, with the known list
    variants = perf_variants(models or DEFAULT_PERF_MODELS, levels, round_tos, layers, device,
                             method)
    return PerfSettings(device, dtype, tuple(variants), lens, new,
                        GPU_DECODE_PROMPT_LEN if gpu else CPU_DECODE_PROMPT_LEN,
                        _positive("--glu-perf-rounds", rounds or default_rounds), warmup,
                        float(tolerance))


# ---------------------------------------------------------------- models


@dataclass
class PerfModel:
    """A built perf variant."""

    variant: PerfVariant
    model: Any
    report: PruneReport
    weights: str  # "pretrained" or "random"

    @property
    def config(self) -> Any:
        return self.model.config


class PerfModels:
    """Perf variants, built by the suite's ``VariantCache`` with local weights when they are
    on disk and random weights of the exact shape otherwise (the hub is never asked)."""

    def __init__(self, device: str, dtype: torch.dtype, model_dir: str | None = None):
        self.cache = VariantCache(device=device, dtype=dtype, weights="local",
                                  model_dir=model_dir)

        self._reference: PerfModel | None = None

    def get(self, v: PerfVariant) -> PerfModel:
        """The built variant ``v`` (reused when it is the current one)."""
        built = self.cache.get(v.id, num_layers=v.layers)
        return PerfModel(v, built.model, built.report, built.weights)

    def reference(self, v: PerfVariant) -> PerfModel:
        """The unpruned model of ``v``'s shape and depth, resident beside ``v``.

        Level 0 is the cache's base model itself, so holding it costs no memory; it is
        built once per model and depth.
        """
        ref = replace(v, pct=0, round_to=1)
        if self._reference is None or self._reference.variant.key != ref.key:
            self._reference = None  # let the previous model's base go first
            self._reference = self.get(ref)
        return self._reference



# ---------------------------------------------------------------- timed calls


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA runs asynchronously; CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def random_prompt(batch: int, length: int, vocab_size: int, device: str,
                  seed: int = 0) -> torch.Tensor:
    """Token ids (no tokenizer needed: speed does not depend on which tokens)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=gen).to(device)


@torch.inference_mode()
def prefill(model: Any, input_ids: torch.Tensor, use_cache: bool = False) -> None:
    """TTFT: one synchronized forward over the prompt, logits for the last position only.

    ``use_cache=True`` also fills a KV cache, as ``generate()``'s first step does.
    """
    model(input_ids=input_ids, use_cache=use_cache, logits_to_keep=1)
    synchronize(input_ids.device)


def fixed_length_config(model: Any, new_tokens: int) -> Any:
    """Greedy generation of exactly ``new_tokens`` (EOS suppressed until then)."""
    from transformers import GenerationConfig

    eos = model.config.eos_token_id
    pad = model.config.pad_token_id
    pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos) or 0
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            do_sample=False, eos_token_id=eos, pad_token_id=pad,
                            use_cache=True)


@torch.inference_mode()
def generate(model: Any, input_ids: torch.Tensor, config: Any) -> torch.Tensor:
    """One synchronized ``generate()`` call; returns prompt + new token ids."""
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                         generation_config=config)
    synchronize(input_ids.device)
    return out


def _cache_argument(model: Any) -> str:
    """The forward argument that takes a KV cache (transformers 5 renamed it ``cache``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(output: Any) -> Any:
    cache = output.get("cache")
    return cache if cache is not None else output.get("past_key_values")


@dataclass
class DecodeStart:
    """A model right after prefill: its KV cache and the first generated token.

    ``fresh()`` gives each round its own copy of the cache (decoding grows it), so every
    round decodes from the same state without repeating the prefill.
    """

    model: Any
    cache: Any
    token: torch.Tensor

    def fresh(self) -> tuple[Any, Any, torch.Tensor]:
        """``(model, cache copy, first token)``: the arguments of :func:`decode`."""
        return self.model, copy.deepcopy(self.cache), self.token


@torch.inference_mode()
def start_decode(model: Any, input_ids: torch.Tensor) -> DecodeStart:
    """Prefill ``input_ids`` (untimed set-up of a decode benchmark)."""
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1:].argmax(-1)
    synchronize(input_ids.device)
    return DecodeStart(model, _cache_of(out), token)


@torch.inference_mode()
def decode(model: Any, cache: Any, token: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` greedy decode steps from a prefilled ``cache``; returns the last token.

    The step count is fixed and EOS is never looked at, so every variant decodes the same
    number of tokens; each step is synchronized, as ``generate()`` is when it checks its
    stopping criteria. Only decode is inside, so its time is positive by construction.
    """
    name = _cache_argument(model)
    for _ in range(steps):
        out = model(input_ids=token, use_cache=True, logits_to_keep=1, **{name: cache})
        cache = _cache_of(out)
        token = out.logits[:, -1:].argmax(-1)
        synchronize(token.device)
    return token


def mlp_block_size(v: PerfVariant) -> tuple[int, int]:
    """(hidden, kept intermediate) of a lone-block variant."""
    spec = get_model_spec(v.model)
    return spec.hidden_size, kept_count(spec.intermediate_size, pct=v.pct, round_to=v.round_to)


def mlp_block_id(v: PerfVariant, tokens: int = MLP_BLOCK_TOKENS) -> str:
    """Test id of a lone-block benchmark, e.g. ``llama-3.2-1b-maw-p10-r128-i7424-T512``."""
    return f"{v.slug}-i{mlp_block_size(v)[1]}-T{tokens}"


def mlp_block(hidden_size: int, intermediate_size: int, dtype: torch.dtype,
              device: str, seed: int = 0) -> torch.nn.Module:
    """A lone Llama GLU MLP of the given sizes (random weights)."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    config = make_config("llama-3.2-1b")
    config.hidden_size, config.intermediate_size = hidden_size, intermediate_size
    torch.manual_seed(seed)
    return LlamaMLP(config).to(device=device, dtype=dtype).eval()


@torch.inference_mode()
def run_block(block: torch.nn.Module, x: torch.Tensor) -> None:
    """One synchronized forward of a lone block."""
    block(x)
    synchronize(x.device)


# ---------------------------------------------------------------- paired rounds


@dataclass(frozen=True)
class Call:
    """A timed call; ``fresh`` makes its arguments anew each round, untimed."""

    fn: Callable[..., Any]
    args: tuple = ()
    fresh: Callable[[], tuple] | None = None

    def arguments(self) -> tuple:
        return self.fresh() if self.fresh is not None else self.args

    def timed(self) -> float:
        """Seconds of one call (pytest-benchmark's default timer, ``perf_counter``)."""
        args = self.arguments()
        t0 = time.perf_counter()
        self.fn(*args)
        return time.perf_counter() - t0


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE
                    ) -> tuple[float | None, float | None]:
    """Distribution-free confidence interval of the median (order statistics, scipy's
    ``quantile_test``); ``(None, None)`` when there are too few values for ``confidence``
    (fewer than 6 at 95 %)."""
    from scipy.stats import quantile_test

    if len(values) < 2:
        return None, None
    ci = quantile_test(list(values), q=statistics.median(values), p=0.5
                       ).confidence_interval(confidence)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None, None
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Speedup:
    """Reference time / variant time of each paired round, summarized by the median and a
    confidence interval of the median. Significant when the interval excludes 1."""

    ratios: tuple[float, ...]
    confidence: float = CONFIDENCE

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def interval(self) -> tuple[float | None, float | None]:
        return median_interval(self.ratios, self.confidence)

    @property
    def significant(self) -> bool:
        low, high = self.interval
        return low is not None and (low > 1 or high < 1)

    def fields(self) -> dict[str, Any]:
        """The record fields: ``speedup`` and its interval, rounds and significance."""
        low, high = self.interval
        return {"speedup": self.median, "speedup_low": low, "speedup_high": high,
                "speedup_rounds": len(self.ratios), "speedup_confidence": self.confidence,
                "speedup_significant": self.significant, "speedup_paired": True}


def run_paired(benchmark: Any, variant: Call, reference: Call | None, *, rounds: int,
               warmup: int) -> tuple[Any, Speedup | None]:
    """Time ``variant`` with pytest-benchmark, each round preceded by a timed round of
    ``reference`` (pedantic's ``setup``): A B A B ... in one session.

    Returns the variant call's last result and the paired speedup (``None`` without a
    reference, or when benchmarks are disabled).
    """
    ref_times: list[float] = []

    def setup() -> tuple[tuple, dict]:
        if reference is not None:
            ref_times.append(reference.timed())
        return variant.arguments(), {}

    result = benchmark.pedantic(variant.fn, setup=setup, rounds=rounds, warmup_rounds=warmup)
    stats = getattr(benchmark.stats, "stats", None) if benchmark.stats else None
    if reference is None or stats is None:
        return result, None
    paired = ref_times[warmup:warmup + len(stats.data)]  # setup also ran before warm-ups
    return result, Speedup(tuple(r / v for r, v in zip(paired, stats.data, strict=True)))


# ---------------------------------------------------------------- statistics and ideals


def timing_stats(benchmark: Any) -> dict[str, float]:
    """pytest-benchmark's statistics of the last run (quartiles, Tukey outliers), plus p90
    (which it does not give)."""
    s = benchmark.stats.stats
    data = sorted(s.data)
    p90 = data[0] if len(data) == 1 else statistics.quantiles(data, n=10, method="inclusive")[8]
    return {"median_s": s.median, "p90_s": p90, "mean_s": s.mean, "min_s": s.min,
            "max_s": s.max, "q1_s": s.q1, "q3_s": s.q3, "iqr_s": s.iqr,
            "outliers": s.iqr_outliers, "rounds": s.rounds}


def spread(stats: dict[str, float], scale: Callable[[float], float] = lambda t: t
           ) -> dict[str, Any]:
    """The quartiles of a timing in the row's own unit, rounds and Tukey outliers.

    ``scale`` turns seconds into the unit (per token: t / n; tokens/s: n / t, which
    reverses the order of the quartiles, hence the sort).
    """
    q1, q3 = sorted((scale(stats["q1_s"]), scale(stats["q3_s"])))
    return {"q1": q1, "q3": q3, "rounds": stats["rounds"], "outliers": stats["outliers"]}


def ideal_prefill_speedup(config: Any, n: int, k: int, prompt_len: int) -> float:
    """Speedup a prefill would get if time followed FLOPs exactly."""
    return prefill_flops(config, n, prompt_len) / prefill_flops(config, k, prompt_len)


def ideal_decode_speedup(config: Any, n: int, k: int) -> float:
    """Speedup a decode step would get if time followed the bytes of weights read."""
    return decode_weight_bytes(config, n) / decode_weight_bytes(config, k)


# ---------------------------------------------------------------- judging and records


@dataclass
class Row:
    """One measured benchmark row of one variant: the judged metric and what goes beside it."""

    benchmark: str  # "ttft@512", "tpot", "throughput@b8", "mlp@T512", "energy-prefill@512"
    metric: str
    value: float
    unit: str
    higher_is_better: bool = False
    ideal_speedup: float | None = None
    spread: dict[str, Any] = field(default_factory=dict)  # q1, q3, rounds, outliers
    paired: Speedup | None = None  # speedup from rounds interleaved with the reference's
    conditions: dict[str, Any] = field(default_factory=dict)  # prompt_len, batch, new_tokens
    extra: dict[str, Any] = field(default_factory=dict)  # side numbers: shown, not judged


def make_record(*, variant: str, benchmark: str, metric: str, value: Any, unit: str,
                baseline: float | None = None, verdict: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """One plain record for the results table (the shape every suite record shares)."""
    return {"metric": metric, "value": value, "unit": unit, "variant": variant,
            "benchmark": benchmark, "baseline": baseline, "verdict": verdict, **extra}


def emit_record(node: Any, record: dict[str, Any]) -> None:
    """Hand a record to the results plugin (user_properties travel back from xdist too)."""
    node.user_properties.append(("glu_record", record))


def _unit_of(name: str) -> str:
    for suffix, unit in (("_per_s", "tok/s"), ("_s", "s"), ("_w", "W"),
                         ("_per_token", "J/tok"), ("_per_token_net", "J/tok")):
        if name.endswith(suffix):
            return unit
    return ""


@dataclass
class PerfContext:
    """Session state of the latency/energy tests: settings, models, baselines, references."""

    settings: PerfSettings
    models: PerfModels
    baselines: PerfBaselines
    references: dict[tuple[Any, ...], float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)  # judged records, in run order
    notes: list[str] = field(default_factory=list)  # run-wide warnings (GPU shared, ...)
    energy: Any = None  # glu_prune.energy.EnergyMeter when NVML has this GPU
    energy_unavailable: str = "no NVIDIA GPU/NVML"

    def finish(self, row: Row, built: PerfModel | PerfVariant, benchmark: Any,
               node: Any) -> dict[str, Any]:
        """Judge ``row`` (speedup vs the unpruned model, efficiency vs ideal, baseline
        verdict), fill ``benchmark.extra_info`` and emit one record per number.

        The speedup is the paired one when the row has it; ``speedup_separate`` is the
        ratio to the unpruned model's own test, measured apart (kept to show the
        difference). Returns the judged record.
        """
        v = built.variant if isinstance(built, PerfModel) else built
        separate = self._separate_speedup(v, row)
        speed = row.paired.fields() if row.paired is not None else {
            "speedup": separate, "speedup_paired": False}
        efficiency = (speed["speedup"] / row.ideal_speedup
                      if speed["speedup"] and row.ideal_speedup else None)
        baseline, verdict = self.baselines.check(v.key, row.benchmark, row.metric, row.value,
                                                 row.unit, higher_is_better=row.higher_is_better)
        context = self._context(built, row, node)
        record = make_record(variant=v.slug, benchmark=row.benchmark, metric=row.metric,
                             value=row.value, unit=row.unit, baseline=baseline, verdict=verdict,
                             direction="higher" if row.higher_is_better else "lower",
                             **row.spread, **speed, speedup_separate=separate,
                             ideal_speedup=row.ideal_speedup, efficiency=efficiency,
                             notes="; ".join(self.notes) or None, **context)
        # The judged record and the side numbers, so --benchmark-json alone can rebuild tables.
        benchmark.extra_info.update({**record, "extra": dict(row.extra)})
        emit_record(node, record)
        self.records.append(record)
        for name, value in row.extra.items():
            unit = _unit_of(name)  # side numbers with a unit: shown, not judged
            if unit and isinstance(value, (int, float)) and not isinstance(value, bool):
                emit_record(node, make_record(
                    variant=v.slug, benchmark=row.benchmark, metric=name, value=value,
                    unit=unit, direction="higher" if unit.endswith("/s") else "lower",
                    **context))
        return record

    def _separate_speedup(self, v: PerfVariant, row: Row) -> float | None:
        """Speedup over the unpruned model's own test earlier in this run (measured apart:
        the way it was done before rounds were paired)."""
        key = (v.reference_group, row.benchmark, row.metric)
        if v.is_reference:
            self.references[key] = row.value
        ref = self.references.get(key)
        if ref is None or ref <= 0 or row.value <= 0:
            return None
        return row.value / ref if row.higher_is_better else ref / row.value

    def _context(self, built: PerfModel | PerfVariant, row: Row, node: Any) -> dict[str, Any]:
        """What every record of this row shares: identity and the conditions it was
        measured under (depth of the full depth, dtype, device, threads, weights,
        prompt length, batch)."""
        v = built.variant if isinstance(built, PerfModel) else built
        context = {"model": v.model, "pct": v.pct, "round_to": v.round_to, "layers": v.layers,
                   "full_layers": v.full_layers, "reduced_depth": v.layers < v.full_layers,
                   "dtype": self.settings.dtype, "device": self.baselines.device.name,
                   "key": v.key,
                   "kind": "energy" if row.benchmark.startswith("energy") else "latency",
                   "threads": None if self.settings.on_gpu else torch.get_num_threads(),
                   "test": getattr(node, "nodeid", None), **row.conditions}
        if isinstance(built, PerfModel):
            context.update(weights=built.weights,
                           intermediate_size=built.report.intermediate_size_after)
        return context

    def find(self, variant: PerfVariant, benchmark: str) -> dict[str, Any] | None:
        """The judged record of ``variant`` on ``benchmark`` from earlier in this run."""
        return next((r for r in self.records if r["key"] == variant.key
                     and r["benchmark"] == benchmark), None)

    def failure(self, record: dict[str, Any]) -> str | None:
        """Why this judged record fails its test (regression, or freshly pinned), else None."""
        b = self.baselines
        where = f"{b.path} (device {b.device.name}, {b.device.dtype})"
        head = (f"{record['variant']} {record['benchmark']} {record['metric']} = "
                f"{record['value']:.6g} {record['unit']}")
        if record["verdict"] == "regression":
            return (f"{head} regressed beyond {b.tolerance:.0%} of its baseline "
                    f"{record['baseline']:.6g} in {where}; if the change is expected, re-pin "
                    f"with --glu-update-baselines and review the diff")
        if record["verdict"] == "pinned":
            old = "none" if record["baseline"] is None else f"{record['baseline']:.6g}"
            return (f"baseline pinned (--glu-update-baselines): {head} (was {old}) in {where}; "
                    f"review the diff (git diff) and rerun without the flag")
        return None


# ---------------------------------------------------------------- tables


TABLE_COLUMNS = ("variant", "layers", "weights", "benchmark", "metric", "value", "unit",
                 "q1", "q3", "rounds", "outliers", "speedup", "speedup_low", "speedup_high",
                 "ideal_speedup", "efficiency", "baseline", "verdict")


def _cell(x: Any) -> Any:
    return f"{x:.4g}" if isinstance(x, float) else ("" if x is None else x)


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """Judged perf records as a GitHub markdown table (spread, speedup and its interval)."""
    from tabulate import tabulate

    rows = [[_cell(r.get(c)) for c in TABLE_COLUMNS] for r in records]
    return tabulate(rows, headers=list(TABLE_COLUMNS), tablefmt="github")


def records_from_benchmark_json(path: str | Path) -> list[dict[str, Any]]:
    """The judged records kept in a ``--benchmark-json`` file's ``extra_info``."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [b["extra_info"] for b in data.get("benchmarks", [])
            if "metric" in b.get("extra_info", {})]


def summary_lines(ctx: PerfContext) -> list[str]:
    """The terminal summary: device, baseline state, run notes, and the table."""
    b, s = ctx.baselines, ctx.settings
    weights = sorted({r["weights"] for r in ctx.records if r.get("weights")})
    lines = [f"device: {b.device.name} (driver {b.device.driver}), {s.dtype}; "
             f"weights: {', '.join(weights) or 'n/a'} (speed does not depend on weight values)"]
    if b.pinned:
        lines.append(f"pinned {b.pinned} value(s) into {b.path}: review the diff")
    elif b.data is None:
        lines.append(f"{b.reason} ({b.device.name}, {s.dtype}): numbers recorded, not "
                     f"compared; pin them with --glu-update-baselines")
    else:
        lines.append(f"compared with {b.path} (tolerance {b.tolerance:.0%})")
    lines.append(f"speedup: median of paired rounds (unpruned and pruned alternating), "
                 f"{CONFIDENCE:.0%} interval of the median in speedup_low..speedup_high")
    lines += [f"note: {n}" for n in ctx.notes]
    return lines + markdown_table(ctx.records).splitlines()
