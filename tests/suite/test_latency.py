"""Latency benchmarks: TTFT (prefill), TPOT (decode), batch throughput, lone-MLP alignment.

Run with ``pytest --benchmark-only`` (serially). A pruned variant's rounds alternate with
its unpruned reference's in the same benchmark session (A B A B ...), so every row's
speedup comes from paired rounds, with a 95 % interval; the efficiency is that speedup
against the config's ideal.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import pytest
import torch

from glu_prune.catalog.models import get_model_spec
from glu_prune.performance.settings import MLP_BLOCK_TOKENS
from glu_prune.performance.stats import Call, Row, run_paired, spread, timing_stats
from glu_prune.performance.timing import (decode, fixed_length_config, generate, mlp_block,
                                          mlp_block_size, prefill, random_prompt, run_block,
                                          start_decode)
from glu_prune.judging import prefill_efficiency_floor

pytestmark = pytest.mark.latency


def _stats(benchmark: Any) -> dict[str, float]:
    if benchmark.disabled:
        pytest.skip("benchmarks are disabled (--benchmark-disable): nothing was timed")
    return timing_stats(benchmark)


def _judge(ctx: Any, row: Row, built: Any, benchmark: Any, request: Any,
           rule: Callable[[dict[str, Any]], None] = lambda record: None) -> dict[str, Any]:
    """Record ``row``, apply ``rule`` (a check that needs no baseline, so a missing baseline
    never hides it), then judge against the baseline."""
    record = ctx.finish(row, built, benchmark, request.node)
    rule(record)
    message = ctx.failure(record)
    if message:
        pytest.fail(message, pytrace=False)
    absent = ctx.absent(record)
    if absent:  # measured and recorded, but nothing to compare with: never a pass
        pytest.skip(absent)
    return record


def _sizes(built: Any) -> tuple[int, int]:
    return built.report.intermediate_size_before, built.report.intermediate_size_after


def level_zero_model(ctx: Any, built: Any) -> Any:
    """The unpruned model to pair rounds with (None for the unpruned model itself)."""
    return None if built.variant.is_level_zero else ctx.models.level_zero(built.variant)


def _group(name: str, built: Any) -> str:
    return f"{name} {built.variant.model} {built.variant.layers}l"


def test_ttft(perf_model, prompt_len, perf_context, benchmark, request):
    """Prefill of ``prompt_len`` tokens at batch 1, logits for the last position only."""
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(1, prompt_len, cfg.vocab_size, s.device)
    ref = level_zero_model(perf_context, perf_model)
    benchmark.group = _group(f"ttft@{prompt_len}", perf_model)
    _, speedup = run_paired(benchmark, Call(prefill, (perf_model.model, ids)),
                            ref and Call(prefill, (ref.model, ids)),
                            rounds=s.rounds, warmup=s.warmup)
    st = _stats(benchmark)
    row = Row(f"ttft@{prompt_len}", "ttft_median_s", st["median_s"], "s",
              ideal_speedup=perf_model.ideal_prefill(prompt_len), spread=spread(st),
              paired=speedup, conditions={"prompt_len": prompt_len, "batch": 1},
              extra={"ttft_p90_s": st["p90_s"],
                     "prefill_tokens_per_s": prompt_len / st["median_s"]})
    _judge(perf_context, row, perf_model, benchmark, request,
           rule=lambda record: _efficiency_floor(perf_context, perf_model, record, row))


def _efficiency_floor(ctx: Any, built: Any, record: dict[str, Any], row: Row) -> None:
    """The aligned variant's prefill must reach its share of the FLOP-ideal speedup
    (``prefill_efficiency_floor``; asserted with or without a speed baseline)."""
    v, cfg, prompt_len = built.variant, built.config, row.conditions["prompt_len"]
    if v.shape != "width":  # the floor was measured for uniform aligned widths only
        return
    floor = prefill_efficiency_floor(cfg.hidden_size, _sizes(built)[0], v.pct, v.round_to,
                                     prompt_len, ctx.settings.device)
    if floor is None or record["efficiency"] is None:
        return
    unaligned = ctx.find(replace(v, round_to=1), row.benchmark)
    beside = (f"; unaligned {unaligned['variant']}: efficiency {unaligned['efficiency']:.2f}"
              if unaligned and unaligned.get("efficiency") is not None else "")
    assert record["efficiency"] >= floor, (
        f"{v.slug} prefill@{prompt_len}: speedup {record['speedup']:.3f} is "
        f"{record['efficiency']:.2f} of the FLOP-ideal {record['ideal_speedup']:.3f}, "
        f"below {floor}{beside}")


def test_tpot(perf_model, perf_context, benchmark, request):
    """Per-token decode time: the new tokens − 1 decode steps after a prefill, timed alone
    (the prefill is untimed set-up), fixed output length, EOS ignored."""
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(1, s.decode_prompt_len, cfg.vocab_size, s.device)
    steps = s.new_tokens - 1  # the prefill yields the first new token
    start = start_decode(perf_model.model, ids)
    ref = level_zero_model(perf_context, perf_model)
    ref_start = ref and start_decode(ref.model, ids)
    benchmark.group = _group("tpot", perf_model)
    last, speedup = run_paired(
        benchmark, Call(decode, fresh=lambda: (*start.fresh(), steps)),
        ref_start and Call(decode, fresh=lambda: (*ref_start.fresh(), steps)),
        rounds=s.rounds, warmup=s.warmup)
    assert last.shape == (1, 1)
    st = _stats(benchmark)
    tpot = st["median_s"] / steps
    per_token = lambda t: t / steps  # noqa: E731 - one round's seconds -> s per token
    row = Row("tpot", "tpot_s", tpot, "s", ideal_speedup=perf_model.ideal_decode(),
              spread=spread(st, per_token), paired=speedup, scale=per_token,
              conditions={"prompt_len": s.decode_prompt_len, "batch": 1,
                          "new_tokens": s.new_tokens},
              extra={"decode_median_s": st["median_s"], "decode_tokens_per_s": 1 / tpot})
    _judge(perf_context, row, perf_model, benchmark, request)


def test_throughput(perf_model, perf_context, benchmark, request):
    """Generated tokens/s of ``generate()`` at batch 8, fixed prompt and output lengths."""
    s, cfg = perf_context.settings, perf_model.config
    ids = random_prompt(s.batch, s.decode_prompt_len, cfg.vocab_size, s.device)
    gen_config = fixed_length_config(perf_model.model, s.new_tokens)
    ref = level_zero_model(perf_context, perf_model)
    benchmark.group = _group(f"throughput@b{s.batch}", perf_model)
    out, speedup = run_paired(
        benchmark, Call(generate, (perf_model.model, ids, gen_config)),
        ref and Call(generate, (ref.model, ids, fixed_length_config(ref.model, s.new_tokens))),
        rounds=s.rounds, warmup=s.warmup)
    assert out.shape == (s.batch, ids.shape[-1] + s.new_tokens), (
        f"generate() returned {out.shape[-1] - ids.shape[-1]} new tokens, expected exactly "
        f"{s.new_tokens} (min_new_tokens = max_new_tokens)")
    st = _stats(benchmark)
    tokens = s.batch * s.new_tokens
    rate = lambda t: tokens / t  # noqa: E731 - one round's seconds -> tokens/s
    row = Row(f"throughput@b{s.batch}", "tokens_per_s", tokens / st["median_s"], "tok/s",
              higher_is_better=True, ideal_speedup=perf_model.ideal_decode(),
              spread=spread(st, rate), paired=speedup, scale=rate,
              conditions={"prompt_len": s.decode_prompt_len, "batch": s.batch,
                          "new_tokens": s.new_tokens},
              extra={"generate_median_s": st["median_s"], "generate_p90_s": st["p90_s"]})
    _judge(perf_context, row, perf_model, benchmark, request)


def test_mlp_block(mlp_variant, perf_context, benchmark, request):
    """A lone GLU MLP at the unpruned, 10 % (unaligned) and 10 % rounded-to-128 sizes.

    Isolates what an unaligned intermediate size costs: ideal speedup is n/k, so an
    efficiency well below 1 at 7373 but not at 7424 is the alignment penalty. The
    unpruned block's rounds alternate with the pruned one's.
    """
    s = perf_context.settings
    hidden, k = mlp_block_size(mlp_variant)
    n = get_model_spec(mlp_variant.model).intermediate_size
    block = mlp_block(mlp_variant.model, k, s.torch_dtype, s.device)
    x = torch.randn(1, MLP_BLOCK_TOKENS, hidden, dtype=s.torch_dtype, device=s.device)
    ref = None if mlp_variant.is_level_zero else Call(
        run_block, (mlp_block(mlp_variant.model, n, s.torch_dtype, s.device), x))
    benchmark.group = f"mlp@T{MLP_BLOCK_TOKENS} {mlp_variant.model}"
    # At least the whole-model rounds: the block is cheap and the ratios are the point.
    rounds = max(s.rounds, 9)
    _, speedup = run_paired(benchmark, Call(run_block, (block, x)), ref,
                            rounds=rounds, warmup=max(s.warmup, 1))
    st = _stats(benchmark)
    assert st["median_s"] > 0 and st["q1_s"] <= st["median_s"] <= st["q3_s"], st
    assert st["rounds"] == rounds, f"{st['rounds']} rounds timed, {rounds} asked for"
    if ref is not None:  # a pruned block: one paired ratio per timed round
        assert speedup is not None and len(speedup.ratios) == rounds, speedup
    row = Row(f"mlp@T{MLP_BLOCK_TOKENS}", "mlp_median_s", st["median_s"], "s",
              ideal_speedup=n / k, spread=spread(st), paired=speedup,
              conditions={"prompt_len": MLP_BLOCK_TOKENS, "batch": 1, "weights": "random"},
              extra={"mlp_p90_s": st["p90_s"], "intermediate_size": k})
    record = _judge(perf_context, row, mlp_variant, benchmark, request)
    assert record["ideal_speedup"] == n / k
    efficiency = record["efficiency"]
    assert efficiency is not None and math.isfinite(efficiency) and efficiency > 0, record
