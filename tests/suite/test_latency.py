"""Latency benchmarks: TTFT (prefill), TPOT (decode), batch throughput, lone-MLP alignment.

Run with ``pytest --benchmark-only`` (serially). Every row carries the measured speedup
over the unpruned model of this run and its efficiency against the config's ideal.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from glu_prune.models import get_model_spec
from glu_prune.perf import (MLP_BLOCK_TOKENS, Row, fixed_length_config, generate,
                            ideal_decode_speedup, ideal_prefill_speedup, median_time,
                            mlp_block, mlp_block_size, prefill, random_prompt, run_block,
                            timing_stats)
from glu_prune.perf_baselines import prefill_efficiency_floor

pytestmark = pytest.mark.latency


def _stats(benchmark: Any) -> dict[str, float]:
    if benchmark.disabled:
        pytest.skip("benchmarks are disabled (--benchmark-disable): nothing was timed")
    return timing_stats(benchmark)


def _judge(ctx: Any, row: Row, built: Any, benchmark: Any, request: Any) -> dict[str, Any]:
    record = ctx.finish(row, built, benchmark, request.node)
    message = ctx.failure(record)
    if message:
        pytest.fail(message, pytrace=False)
    return record


def _sizes(built: Any) -> tuple[int, int]:
    return built.report.intermediate_size_before, built.report.intermediate_size_after


def test_ttft(perf_model, prompt_len, perf_context, benchmark, request):
    """Prefill of ``prompt_len`` tokens at batch 1, logits for the last position only."""
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(1, prompt_len, cfg.vocab_size, s.device)
    benchmark.group = f"ttft@{prompt_len} {perf_model.variant.model} {perf_model.variant.layers}l"
    benchmark.pedantic(prefill, args=(perf_model.model, ids), rounds=s.rounds,
                       warmup_rounds=s.warmup)
    st = _stats(benchmark)
    n, k = _sizes(perf_model)
    row = Row(f"ttft@{prompt_len}", "ttft_median_s", st["median_s"], "s",
              ideal_speedup=ideal_prefill_speedup(cfg, n, k, prompt_len),
              extra={"ttft_p90_s": st["p90_s"],
                     "prefill_tokens_per_s": prompt_len / st["median_s"]})
    record = _judge(perf_context, row, perf_model, benchmark, request)

    v = perf_model.variant
    floor = prefill_efficiency_floor(cfg.hidden_size, n, v.pct, v.round_to, prompt_len,
                                     s.device)
    if floor is not None and record["efficiency"] is not None:
        unaligned = perf_context.find(replace(v, round_to=1), row.benchmark)
        beside = (f"; unaligned {unaligned['variant']}: efficiency {unaligned['efficiency']:.2f}"
                  if unaligned and unaligned.get("efficiency") is not None else "")
        assert record["efficiency"] >= floor, (
            f"{v.slug} prefill@{prompt_len}: speedup {record['speedup']:.3f} is "
            f"{record['efficiency']:.2f} of the FLOP-ideal {record['ideal_speedup']:.3f}, "
            f"below {floor}{beside}")


def test_tpot(perf_model, perf_context, benchmark, request):
    """Per-token decode time: (generate − prefill) / (new tokens − 1), fixed output length."""
    s, cfg, model = perf_context.settings, perf_model.config, perf_model.model
    ids = random_prompt(1, s.decode_prompt_len, cfg.vocab_size, s.device)
    gen_config = fixed_length_config(model, s.new_tokens)
    benchmark.group = f"tpot {perf_model.variant.model} {perf_model.variant.layers}l"
    out = benchmark.pedantic(generate, args=(model, ids, gen_config), rounds=s.rounds,
                             warmup_rounds=s.warmup)
    assert out.shape[-1] == ids.shape[-1] + s.new_tokens, (
        f"generate() returned {out.shape[-1] - ids.shape[-1]} new tokens, expected exactly "
        f"{s.new_tokens} (min_new_tokens = max_new_tokens)")
    st = _stats(benchmark)
    # The prefill that generate() starts with, timed the same way (with a KV cache).
    pre = median_time(lambda: prefill(model, ids, use_cache=True), s.rounds, s.warmup)
    tpot = (st["median_s"] - pre) / (s.new_tokens - 1)
    n, k = _sizes(perf_model)
    row = Row("tpot", "tpot_s", tpot, "s", ideal_speedup=ideal_decode_speedup(cfg, n, k),
              extra={"generate_median_s": st["median_s"], "generate_p90_s": st["p90_s"],
                     "prefill_median_s": pre, "decode_tokens_per_s": 1 / tpot if tpot > 0 else None,
                     "new_tokens": s.new_tokens, "prompt_len": s.decode_prompt_len})
    _judge(perf_context, row, perf_model, benchmark, request)


def test_throughput(perf_model, perf_context, benchmark, request):
    """Generated tokens/s at batch 8, fixed prompt and output lengths."""
    s, cfg, model = perf_context.settings, perf_model.config, perf_model.model
    ids = random_prompt(s.batch, s.decode_prompt_len, cfg.vocab_size, s.device)
    gen_config = fixed_length_config(model, s.new_tokens)
    benchmark.group = f"throughput@b{s.batch} {perf_model.variant.model} " \
                      f"{perf_model.variant.layers}l"
    out = benchmark.pedantic(generate, args=(model, ids, gen_config), rounds=s.rounds,
                             warmup_rounds=s.warmup)
    assert out.shape == (s.batch, ids.shape[-1] + s.new_tokens)
    st = _stats(benchmark)
    n, k = _sizes(perf_model)
    row = Row(f"throughput@b{s.batch}", "tokens_per_s", s.batch * s.new_tokens / st["median_s"],
              "tok/s", higher_is_better=True, ideal_speedup=ideal_decode_speedup(cfg, n, k),
              extra={"generate_median_s": st["median_s"], "generate_p90_s": st["p90_s"],
                     "new_tokens": s.new_tokens, "prompt_len": s.decode_prompt_len})
    _judge(perf_context, row, perf_model, benchmark, request)


def test_mlp_block(mlp_variant, perf_context, benchmark, request):
    """A lone GLU MLP at the unpruned, 10 % (unaligned) and 10 % rounded-to-128 sizes.

    Isolates what an unaligned intermediate size costs: ideal speedup is n/k, so an
    efficiency well below 1 at 7373 but not at 7424 is the alignment penalty.
    """
    s = perf_context.settings
    hidden, k = mlp_block_size(mlp_variant)
    block = mlp_block(hidden, k, s.torch_dtype, s.device)
    x = torch.randn(1, MLP_BLOCK_TOKENS, hidden, dtype=s.torch_dtype, device=s.device)
    benchmark.group = f"mlp@T{MLP_BLOCK_TOKENS} {mlp_variant.model}"
    # More rounds than the whole-model tests: the block is cheap and the ratios are the point.
    benchmark.pedantic(run_block, args=(block, x), rounds=max(s.rounds, 5),
                       warmup_rounds=max(s.warmup, 1))
    st = _stats(benchmark)
    n = get_model_spec(mlp_variant.model).intermediate_size
    row = Row(f"mlp@T{MLP_BLOCK_TOKENS}", "mlp_median_s", st["median_s"], "s",
              ideal_speedup=n / k, extra={"mlp_p90_s": st["p90_s"], "intermediate_size": k})
    _judge(perf_context, row, mlp_variant, benchmark, request)
