"""Perf library (settings, ideals, timed calls, judging, records) and the latency/energy
pytest glue end to end (pytester, tiny model, fake NVML)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from glu_prune.core.loading import load_model
from glu_prune.catalog.models import MODELS, make_config
from glu_prune.catalog.sources import register, spec_from_source
from glu_prune.performance.stats import (Call, Row, Speedup, median_interval, run_paired, spread,
                                         timing_stats)
from glu_prune.plugin.perf_session import PerfContext, markdown_table, records_from_benchmark_json
from glu_prune.performance.models import PerfModels
from glu_prune.performance.settings import (PerfVariant, level_pairs, resolve_layers,
                                            resolve_settings)
from glu_prune.performance.timing import (decode, fixed_length_config, generate, mlp_block,
                                          mlp_block_id,
                                          prefill, random_prompt, start_decode)
from glu_prune.core.arithmetic import ideal_decode_speedup, ideal_prefill_speedup
from glu_prune.evaluation import MetricValue
from glu_prune.judging import (Check, DeviceInfo, JudgingError, SpeedBaselines, Subject, Tolerance,
                               judge, prefill_efficiency_floor)
from glu_prune.judging.rules import compare
from glu_prune.judging.speed_store import NO_BASELINE
from glu_prune.results import Record

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- settings and variants


def test_default_levels_put_the_unpruned_model_first():
    assert level_pairs("llama-3.2-1b", None, None) == [(0, 1), (10, 1), (40, 1), (40, 128)]
    assert level_pairs("tiny-llama", None, [1]) == [(0, 1), (40, 1), (40, 64)]
    # asked-for levels and roundings: level 0 added (speedups need it), never rounded
    assert level_pairs("llama-3.2-1b", [40], [1, 128]) == [(0, 1), (40, 1), (40, 128)]
    assert level_pairs("tiny-llama", None, [1, 64]) == [(0, 1), (40, 1), (40, 64)]
    with pytest.raises(ValueError, match="pct must be in"):
        level_pairs("tiny-llama", [100], None)


def test_depth_full_on_gpu_reduced_for_real_shapes_on_cpu():
    assert resolve_layers("llama-3.2-1b", None, "cpu") == 2
    assert resolve_layers("llama-3.2-1b", None, "cuda") == 16
    assert resolve_layers("tiny-llama", None, "cpu") == 4
    assert resolve_layers("llama-3.2-1b", 40, "cpu") == 16  # capped at full depth
    # --glu-perf-layers=0 is refused once, by the plugin's Options (tests/unit/test_options.py)


def test_other_shapes_are_timed_at_equal_parameters_beside_width():
    from glu_prune.core.matching import closest_depth

    s = resolve_settings(device="cpu", models=["tiny-llama"],
                         shapes=("width", "depth", "global"))
    d = closest_depth(make_config("tiny-llama"), 40)
    assert [v.slug for v in s.variants] == [
        "tiny-llama-maw-p0", "tiny-llama-maw-p40", "tiny-llama-maw-p40-r64",
        "tiny-llama-maw-global-p40", f"tiny-llama-depth-last-d{d}",
        "tiny-llama-maw-global-p40-r64"]  # both width levels match the same depth: once
    base, depth = s.variants[0], s.variants[4]
    assert depth.removed == d and not depth.is_level_zero and depth.unmeasurable == ""
    assert depth.reference.key == base.key and base.is_level_zero  # paired with p0
    only = resolve_settings(device="cpu", models=["tiny-llama"], shapes=("depth",))
    assert [v.shape for v in only.variants] == ["width", "depth"]  # level 0 stays


def test_a_depth_variant_is_not_timed_on_a_run_of_fewer_layers():
    """2 of 16 layers cannot stand for 16 minus 4: the test skips, saying how to time it."""
    cpu = resolve_settings(device="cpu", models=["llama-3.2-1b"], shapes=("depth",))
    depth = next(v for v in cpu.variants if v.shape == "depth")
    assert depth.layers == 2 and "--glu-perf-layers 16" in depth.unmeasurable
    full = resolve_settings(device="cpu", models=["llama-3.2-1b"], shapes=("depth",),
                            layers=16)
    assert all(not v.unmeasurable for v in full.variants)


def test_settings_defaults_and_unknown_models():
    s = resolve_settings(device="cpu")
    assert (s.dtype, s.prompt_lens, s.new_tokens, s.rounds, s.warmup) == \
        ("float32", (128,), 4, 9, 1)  # 9 paired rounds: a 95 % interval of the median
    assert [v.slug for v in s.variants][:3] == ["tiny-llama-maw-p0", "tiny-llama-maw-p40",
                                               "tiny-llama-maw-p40-r64"]
    assert {v.key for v in s.variants} >= {"llama-3.2-1b-maw-p40-r128-2l", "tiny-llama-maw-p0-4l"}
    g = resolve_settings(device="cuda:0", models=["llama-3.2-1b"], prompt_lens=[128, 2048])
    assert (g.dtype, g.new_tokens, g.rounds) == ("bfloat16", 64, 10)
    assert {v.layers for v in g.variants} == {16}
    assert resolve_settings(device="cpu", prompt_lens=[512, 2048]).prompt_lens_for(
        "tiny-llama") == (512,)  # tiny's positions stop at 1024
    # bad dtypes, prompt lengths, token and round counts are refused once, by the plugin's
    # Options, before these settings are made (tests/unit/test_options.py)
    with pytest.raises(KeyError, match="unknown model 'llama-9b'"):
        resolve_settings(device="cpu", models=["llama-9b"])


def test_mlp_block_ids_carry_slug_and_size():
    s = resolve_settings(device="cpu")
    assert [mlp_block_id(v) for v in s.mlp_blocks()] == [
        "llama-3.2-1b-maw-p0-i8192-T512", "llama-3.2-1b-maw-p10-i7373-T512",
        "llama-3.2-1b-maw-p10-r128-i7424-T512"]
    assert resolve_settings(device="cpu", models=["tiny-llama"]).mlp_blocks() == []


def test_mlp_blocks_of_a_users_model_take_its_own_width(tmp_path, monkeypatch):
    # a Qwen2.5-0.5B-shaped folder (config.json only): hidden 896, width 4864
    (tmp_path / "my-qwen").mkdir()
    (tmp_path / "my-qwen" / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 2, "num_attention_heads": 14, "num_key_value_heads": 2,
        "vocab_size": 1000, "max_position_embeddings": 4096}))
    monkeypatch.setattr(MODELS, "_items", dict(MODELS.items()))  # registration undone after
    register(spec_from_source(str(tmp_path / "my-qwen")))
    s = resolve_settings(device="cpu", models=["my-qwen"])
    assert [mlp_block_id(v) for v in s.mlp_blocks()] == [
        "my-qwen-maw-p0-i4864-T512", "my-qwen-maw-p10-i4378-T512",
        "my-qwen-maw-p10-r128-i4352-T512"]
    block = mlp_block("my-qwen", 4378, torch.float32, "cpu")
    assert (block.gate_proj.out_features, block.down_proj.out_features) == (4378, 896)


# ---------------------------------------------------------------- ideals


def test_ideal_speedups_follow_flops_and_weight_bytes():
    from glu_prune.core.arithmetic import expansion_table

    cfg = make_config("llama-3.2-1b")
    prefill_40, decode_40 = ideal_prefill_speedup(cfg, 8192, 4916, 512), \
        ideal_decode_speedup(cfg, 8192, 4916)
    assert 1.3 < prefill_40 < 1.6 and 1.1 < decode_40 < prefill_40
    row = expansion_table(cfg, [40], prompt_len=512)[0]
    assert (prefill_40, decode_40) == (pytest.approx(row["ideal_prefill_speedup"]),
                                       pytest.approx(row["ideal_decode_speedup"]))
    assert ideal_prefill_speedup(cfg, 8192, 8192, 128) == ideal_decode_speedup(cfg, 8192, 8192) == 1


def test_ideal_speedups_of_any_shape_come_from_the_built_configs():
    """Width: the same as from the sizes; global (other widths, the same total): the same
    as width; depth: the layer fraction, less the embeddings' and lm_head's share."""
    import copy

    from glu_prune.core.arithmetic import ideal_decode_between, ideal_prefill_between
    from glu_prune.core.mlps import set_layer_widths

    base = make_config("llama-3.2-1b")
    width = copy.deepcopy(base)
    width.intermediate_size = 4916
    uneven = copy.deepcopy(base)
    set_layer_widths(uneven, [4916 + (300 if i % 2 else -300) for i in range(16)])
    depth = copy.deepcopy(base)
    depth.num_hidden_layers = 12
    assert ideal_prefill_between(base, width, 512) == pytest.approx(
        ideal_prefill_speedup(base, 8192, 4916, 512))
    assert ideal_decode_between(base, width) == pytest.approx(
        ideal_decode_speedup(base, 8192, 4916))
    assert ideal_prefill_between(base, uneven, 512) == pytest.approx(
        ideal_prefill_between(base, width, 512))
    assert ideal_decode_between(base, uneven) == pytest.approx(ideal_decode_between(base, width))
    for ideal in (ideal_prefill_between(base, depth, 512), ideal_decode_between(base, depth)):
        assert 1.15 < ideal < 16 / 12


@pytest.mark.parametrize(("hidden", "width"), [
    (2048, 8192),  # llama-3.2-1b, where the floor was measured
    (3072, 8192),  # llama-3.2-3b
    (3584, 18944),  # qwen2.5-7b
    (3072, 8192 * 2),  # phi-3-mini keeps 8192 per half of its fused gate_up; any width
])
def test_efficiency_floor_for_any_compute_bound_shape_aligned_at_40_on_gpu(hidden, width):
    assert prefill_efficiency_floor(hidden, width, 40, 128, 2048, "cuda") == 0.8
    assert prefill_efficiency_floor(hidden, width, 40, 1, 2048, "cuda") is None  # unaligned
    assert prefill_efficiency_floor(hidden, width, 40, 128, 2048, "cpu") is None
    assert prefill_efficiency_floor(hidden, width, 40, 128, 512, "cuda") is None  # launch-bound
    assert prefill_efficiency_floor(hidden, width, 10, 128, 2048, "cuda") is None


def test_efficiency_floor_not_for_shapes_too_small_to_be_compute_bound():
    assert prefill_efficiency_floor(896, 4864, 40, 128, 2048, "cuda") is None  # qwen2.5-0.5b
    assert prefill_efficiency_floor(128, 512, 40, 128, 2048, "cuda") is None  # tiny
    assert prefill_efficiency_floor(2048, 3000, 40, 128, 2048, "cuda") is None  # already thin


# ---------------------------------------------------------------- timed calls


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_model("tiny-llama", weights="random", device="cpu")
    return model


def test_generation_has_exactly_the_fixed_length_and_prefill_runs(tiny):
    ids = random_prompt(2, 16, tiny.config.vocab_size, "cpu")
    out = generate(tiny, ids, fixed_length_config(tiny, 5))
    assert out.shape == (2, 21)
    prefill(tiny, ids)  # no error, no output: the timed call is the work alone
    prefill(tiny, ids, use_cache=True)
    assert random_prompt(1, 8, 100, "cpu").tolist() == random_prompt(1, 8, 100, "cpu").tolist()


def test_models_reuse_the_base_and_prune_a_copy():
    models = PerfModels("cpu", __import__("torch").float32)
    p0 = models.get(PerfVariant("tiny-llama", 0, layers=2, full_layers=4))
    p40 = models.get(PerfVariant("tiny-llama", 40, 64, layers=2, full_layers=4))
    assert p40.report.intermediate_size_after == 320 and p40.weights in ("random", "pretrained")
    assert p0.model.config.intermediate_size == 512  # the base stays whole
    assert p0.model.config.num_hidden_layers == 2
    # the reference of a variant is the unpruned base itself, resident beside it
    ref = models.level_zero(p40.variant)
    assert ref.model is p0.model and ref.variant.key == "tiny-llama-maw-p0-2l"
    assert models.level_zero(p40.variant) is ref  # built once per model and depth


def test_decode_runs_exactly_its_steps_from_an_untouched_start(tiny):
    ids = random_prompt(1, 8, tiny.config.vocab_size, "cpu")
    start = start_decode(tiny, ids)
    length = start.cache.get_seq_length()
    model, cache, token = start.fresh()
    last = decode(model, cache, token, 3)
    assert last.shape == (1, 1) and cache.get_seq_length() == length + 3
    assert start.cache.get_seq_length() == length  # every round starts from the prefill
    # greedy and EOS-blind: the same tokens as generate() with a fixed length
    out = generate(tiny, ids, fixed_length_config(tiny, 4))
    assert last.item() == out[0, -1].item()


def _stats_of(data: list[float]):
    """pytest-benchmark's own statistics object, as a benchmark fixture holds it."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for x in data:
        stats.update(x)
    return SimpleNamespace(stats=SimpleNamespace(stats=stats))


def test_timing_stats_are_pytest_benchmarks_plus_p90():
    out = timing_stats(_stats_of([float(x) for x in range(1, 10)] + [100.0]))
    assert out["median_s"] == 5.5 and out["p90_s"] == pytest.approx(18.1)
    assert (out["q1_s"], out["q3_s"], out["rounds"]) == (3.0, 8.0, 10)
    assert out["outliers"] == 1  # 100 s lies beyond 1.5 IQR: pytest-benchmark's count
    assert timing_stats(_stats_of([2.0]))["p90_s"] == 2.0
    # quartiles in the row's unit; tokens/s reverses their order
    assert spread(out, lambda t: 10 / t) == {"q1": 10 / 8, "q3": 10 / 3, "rounds": 10,
                                             "outliers": 1}


# ---------------------------------------------------------------- paired rounds


def test_median_interval_needs_enough_rounds():
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == (None, None)  # 94 % at best
    assert median_interval([float(x) for x in range(1, 7)]) == (1.0, 6.0)
    assert median_interval([float(x) for x in range(1, 10)]) == (2.0, 8.0)  # 9 rounds


def test_speedup_is_significant_only_when_its_interval_excludes_one():
    faster = Speedup((1.3, 1.2, 1.25, 1.4, 1.1, 1.35, 1.3, 1.28, 1.22))
    assert faster.median == 1.28 and faster.interval == (1.2, 1.35) and faster.significant
    noise = Speedup((1.3, 0.9, 1.25, 1.4, 0.95, 1.1, 1.02, 0.98, 1.2))
    assert noise.interval[0] < 1 < noise.interval[1] and not noise.significant
    few = Speedup((1.3, 1.2, 1.25))
    assert few.interval == (None, None) and not few.significant
    assert few.fields()["speedup_significant"] is False and few.fields()["speedup_rounds"] == 3


class FakeBenchmark:
    """pytest-benchmark's pedantic loop (setup before every warm-up and timed round) with
    durations from ``times``; logs the calls in order."""

    def __init__(self, times: list[float]):
        self.times, self.calls = list(times), []
        self.stats = None

    def pedantic(self, target, setup, rounds, warmup_rounds):
        data = []
        for i in range(warmup_rounds + rounds):
            args, kwargs = setup()
            result = target(*args, **kwargs)
            if i >= warmup_rounds:
                data.append(self.times.pop(0))
        self.stats = _stats_of(data).stats
        return result


def test_run_paired_alternates_reference_and_variant_and_pairs_their_rounds(monkeypatch):
    from glu_prune.performance import stats as perf

    bench = FakeBenchmark([1.0, 2.0, 1.0])  # the variant's timed rounds
    clock = iter([0.0, 1.5, 10.0, 13.0, 20.0, 22.0, 30.0, 31.0])  # reference: 1.5, 3, 2, 1
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(clock))
    fresh = iter(range(100))
    result, speedup = run_paired(
        bench, Call(lambda n: bench.calls.append(f"B{n}") or n, fresh=lambda: (next(fresh),)),
        Call(lambda: bench.calls.append("A")), rounds=3, warmup=1)
    assert bench.calls == ["A", "B0", "A", "B1", "A", "B2", "A", "B3"]  # A B A B ...
    assert result == 3
    # the warm-up pair (1.5 s) is dropped; each ratio pairs one round's A with its B
    assert speedup.ratios == (3.0, 1.0, 1.0)


def test_without_a_reference_nothing_is_paired():
    bench = FakeBenchmark([1.0, 1.0])
    _, speedup = run_paired(bench, Call(lambda: None), None, rounds=2, warmup=0)
    assert speedup is None and bench.stats.stats.rounds == 2


# ---------------------------------------------------------------- the perf tolerance rule


def _check(value, higher=False, key="k", benchmark="ttft@512", metric="ttft_median_s"):
    return Check(Subject("llama-3.2-1b", key, benchmark, metric), MetricValue(value, None, None),
                 "latency", "higher" if higher else "lower", "s")


def _judge(baselines, value, **kw):
    """(baseline, verdict as the judged row shows it) of one number."""
    v = judge([_check(value, **kw)], baselines, baselines.tolerance, update=baselines.update)[0]
    return v.baseline, v.detail if v.outcome == "no baseline" else v.outcome


@pytest.mark.parametrize("value, higher, verdict", [
    (1.10, False, "ok"), (1.11, False, "regression"), (0.89, False, "improvement"),
    (0.90, True, "ok"), (0.89, True, "regression"), (1.11, True, "improvement"),
])
def test_compare_is_relative_and_knows_direction(value, higher, verdict):
    tol = Tolerance(speed_rel=0.10 + 1e-9)
    assert compare(_check(value, higher), MetricValue(1.0, None, None), tol).outcome == verdict


def test_compare_rejects_bad_inputs():
    with pytest.raises(ValueError, match="tolerance speed_rel must be a finite number >= 0, "
                                         "got -0.1"):
        Tolerance(speed_rel=-0.1)
    with pytest.raises(JudgingError, match="baseline must be > 0, got 0"):
        compare(_check(1.0), MetricValue(0, None, None), Tolerance())


DEV = DeviceInfo("NVIDIA H200", "570.1", "bfloat16")


def test_baselines_absent_then_pinned_then_compared(tmp_path):
    b = SpeedBaselines.load(tmp_path, DEV)
    assert _judge(b, 0.01) == (None, NO_BASELINE)
    pin = SpeedBaselines.load(tmp_path, DEV, update=True)
    assert _judge(pin, 0.01) == (None, "pinned")
    data = json.loads((tmp_path / "nvidia-h200.json").read_text())
    assert (data["device"], data["format"]) == ("NVIDIA H200", 2)
    assert data["results"]["k"]["ttft@512"]["ttft_median_s"] == {"value": 0.01, "unit": "s",
                                                                  "conditions": {}}
    again = SpeedBaselines.load(tmp_path, DEV, tolerance=0.05)
    assert _judge(again, 0.0106) == (0.01, "regression")
    assert _judge(again, 1.0, key="other")[1] == "no baseline for this variant"


def test_corrupt_baseline_files_name_the_field(tmp_path):
    (tmp_path / "nvidia-h200.json").write_text(json.dumps({
        "format": 2, "device": "x",
        "results": {"k": {"tpot": {"tpot_s": {"value": -1, "conditions": {}}}}}}))
    with pytest.raises(JudgingError, match="results.k.tpot.tpot_s.value must be a number"):
        SpeedBaselines.load(tmp_path, DEV)
    (tmp_path / "nvidia-h200.json").write_text("{")
    with pytest.raises(JudgingError, match="not readable JSON"):
        SpeedBaselines.load(tmp_path, DEV)
    with pytest.raises(ValueError, match="perf tolerance must be a finite number >= 0"):
        SpeedBaselines.load(tmp_path / "none", DEV, tolerance=float("nan"))


# ---------------------------------------------------------------- judging and records


def _bench():
    return SimpleNamespace(extra_info={})


def test_finish_gives_speedup_efficiency_and_schema_records(tmp_path):
    ctx = PerfContext(resolve_settings(device="cpu"), None, SpeedBaselines.load(tmp_path, DEV))
    p0, p40 = (PerfVariant("llama-3.2-1b", pct, layers=2, full_layers=16) for pct in (0, 40))
    node = SimpleNamespace(user_properties=[], nodeid="t::x")
    ctx.finish(Row("ttft@128", "ttft_median_s", 2.0, "s", ideal_speedup=1.0), p0, _bench(), node)
    bench = _bench()
    rec = ctx.finish(Row("ttft@128", "ttft_median_s", 1.6, "s", ideal_speedup=1.5,
                         extra={"ttft_p90_s": 1.7, "calls": 3}), p40, bench, node)
    assert rec["speedup"] == pytest.approx(1.25) and rec["efficiency"] == pytest.approx(1.25 / 1.5)
    assert rec["verdict"] == NO_BASELINE and rec["kind"] == "latency" and rec["layers"] == 2
    assert bench.extra_info["speedup"] == rec["speedup"] and bench.extra_info["extra"]["calls"] == 3
    recs = [value for name, value in node.user_properties if name == "glu_record"]
    assert [r["metric"] for r in recs] == ["ttft_median_s", "ttft_median_s", "ttft_p90_s"]
    for r in recs:  # the results plugin's schema accepts every record
        Record.from_dict(r)
    assert ctx.find(p40, "ttft@128") is rec and ctx.failure(rec) is None
    up = ctx.finish(Row("tokens", "tokens_per_s", 30.0, "tok/s", higher_is_better=True), p0,
                    _bench(), node)
    down = ctx.finish(Row("tokens", "tokens_per_s", 45.0, "tok/s", higher_is_better=True), p40,
                      _bench(), node)
    assert up["direction"] == "higher" and down["speedup"] == pytest.approx(1.5)
    assert "| llama-3.2-1b-maw-p40 |" in markdown_table(ctx.records)


def test_failure_messages_for_regressions_and_pins(tmp_path):
    v = PerfVariant("llama-3.2-1b", 40, layers=2, full_layers=16)
    node = SimpleNamespace(user_properties=[], nodeid="t::x")
    row = Row("tpot", "tpot_s", 0.1, "s")
    pin = PerfContext(resolve_settings(device="cpu"), None,
                      SpeedBaselines.load(tmp_path, DEV, update=True))
    pinned = pin.finish(row, v, _bench(), node)
    assert pinned["verdict"] == "pinned"
    assert pin.failure(pinned) == (
        "baseline pinned (--glu-update-baselines): llama-3.2-1b / llama-3.2-1b-maw-p40-2l / "
        "tpot / tpot_s: none -> 0.1 in "
        f"{tmp_path / 'nvidia-h200.json'} (device NVIDIA H200, bfloat16); review the diff "
        "(git diff) and rerun without the flag")
    ctx = PerfContext(resolve_settings(device="cpu"), None, SpeedBaselines.load(tmp_path, DEV))
    rec = ctx.finish(Row("tpot", "tpot_s", 0.2, "s"), v, _bench(), node)
    assert rec["verdict"] == "regression" and rec["baseline"] == 0.1
    assert ctx.failure(rec) == (
        "llama-3.2-1b / llama-3.2-1b-maw-p40-2l / tpot / tpot_s regression: baseline 0.1 s, "
        "measured 0.2 s; worse by 100.0% vs bound 10% relative [baseline file "
        f"{tmp_path / 'nvidia-h200.json'} (device NVIDIA H200, bfloat16)]; if the change is "
        "expected, re-pin with --glu-update-baselines and review the diff")
    assert ctx.failure(ctx.finish(Row("tpot", "tpot_s", 0.105, "s"), v, _bench(), node)) is None


# ---------------------------------------------------------------- the pytest glue (pytester)

ENERGY_CONFTEST = '''
import time

import pytest

from glu_prune.performance.energy import EnergyMeter


class FakeNVML:
    """A steady 150 W on a clock 1000x faster than real time (a 5 s window takes 5 ms)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def clock(self):
        return 1000.0 * (time.perf_counter() - self.t0)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 150_000.0 * self.clock()  # mJ

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return []

    nvmlDeviceGetGraphicsRunningProcesses = nvmlDeviceGetComputeRunningProcesses


@pytest.fixture(scope="session")
def energy_meter():
    nvml = FakeNVML()
    return EnergyMeter(nvml, 0, clock=nvml.clock, name="Fake GPU"), 30.0
'''


@pytest.fixture(scope="module")
def warm(tiny):
    """Import what the suite imports before pytester snapshots sys.modules (a re-import of
    torch.distributed in an in-process run registers its ops twice)."""
    import glu_prune.plugin  # noqa: F401
    from glu_prune.core.prune import prune_glu_mlp

    prune_glu_mlp(tiny, pct=0)


@pytest.fixture
def suite(pytester, warm):
    # Copies under other names: the originals may already sit in sys.modules (full runs).
    for name in ("latency", "energy"):
        source = (REPO / "tests" / "suite" / f"test_{name}.py").read_text()
        pytester.makepyfile(**{f"test_copy_{name}": source})
    pytester.makeini("[pytest]\nmarkers =\n    latency: l\n    energy: e\n")
    return pytester


def _run(pytester, *args, k="p0 or p40-L or p40]"):
    return pytester.runpytest_inprocess(
        "--benchmark-only", "--glu-models", "tiny-llama",
        "--glu-baselines-dir", "baselines", "--glu-device-name", "Test CPU",
        "--glu-perf-rounds", "1", "--glu-report", "out", "-k", k, "-rsf", *args)


def test_efficiency_floor_is_asserted_without_a_speed_baseline(suite, monkeypatch):
    # The floor is a rule of its own: a missing baseline (a skip) must not hide it. On CPU
    # the real rule holds nothing, so hold every variant to an impossible 100x of ideal.
    import glu_prune.judging
    monkeypatch.setattr(glu_prune.judging, "prefill_efficiency_floor",
                        lambda *args: None if args[2] == 0 else 100.0)
    res = _run(suite, "test_copy_latency.py", k="ttft and p40-L")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*tiny-llama-maw-p40 prefill@128: speedup * of the FLOP-ideal "
                              "*, below 100.0*"])


def test_latency_suite_records_pins_and_catches_a_regression(suite):
    res = _run(suite, "test_copy_latency.py", "--benchmark-json", "bench.json")
    res.assert_outcomes(skipped=6)  # measured and recorded, but no baseline: never a pass
    res.stdout.fnmatch_lines(["SKIPPED*no baseline for this device*pin with "
                              "--glu-update-baselines*"])
    res.stdout.fnmatch_lines(["*no baseline for this device (Test CPU, float32)*"])
    records = records_from_benchmark_json(suite.path / "bench.json")
    assert {(r["variant"], r["benchmark"]) for r in records} >= {
        ("tiny-llama-maw-p40", "ttft@128"), ("tiny-llama-maw-p40", "tpot"),
        ("tiny-llama-maw-p0", "throughput@b8")}
    assert all(r["speedup"] is not None and r["ideal_speedup"] for r in records)
    # pruned variants' speedups come from rounds paired with the unpruned model's
    assert all(r["speedup_paired"] and r["speedup_rounds"] == 1
               for r in records if r["pct"] > 0)
    assert all(r["value"] > 0 for r in records if r["benchmark"] == "tpot")  # by construction
    md = (suite.path / "out" / "results.md").read_text()
    assert "#### TTFT: prefill of 128 tokens at batch 1 — pretrained weights, all 4 layers, " \
           "float32, Test CPU" in md
    assert "**n.s.** (1 rounds: too few for an interval)" in md

    pinned = _run(suite, "test_copy_latency.py", "--glu-update-baselines")
    pinned.assert_outcomes(failed=6)
    pinned.stdout.fnmatch_lines(["*baseline pinned (--glu-update-baselines)*review the diff*"])
    path = suite.path / "baselines" / "perf" / "test-cpu.json"
    data = json.loads(path.read_text())
    assert data["results"]["tiny-llama-maw-p40-4l"]["tpot"]["tpot_s"]["unit"] == "s"

    _run(suite, "test_copy_latency.py", "--glu-perf-tolerance", "1000").assert_outcomes(passed=6)
    other = _run(suite, "test_copy_latency.py", "--glu-perf-tolerance", "1000",
                 "--glu-new-tokens", "8", k="tpot and p40]")
    other.assert_outcomes(failed=1)  # 8 new tokens are never compared with a pin at 4
    other.stdout.fnmatch_lines(["*tpot / tpot_s: baseline measured under other conditions "
                                "(new_tokens 4 vs 8; baseline vs this run)*re-pin with "
                                "--glu-update-baselines*"])
    data["results"]["tiny-llama-maw-p40-4l"]["ttft@128"]["ttft_median_s"]["value"] = 1e-9
    path.write_text(json.dumps(data))
    bad = _run(suite, "test_copy_latency.py", "--glu-perf-tolerance", "1000",
               k="ttft and (p0 or p40-L)")
    bad.assert_outcomes(failed=1, passed=1)
    bad.stdout.fnmatch_lines([
        "tiny-llama / tiny-llama-maw-p40-4l / ttft@128 / ttft_median_s regression: baseline "
        "1e-09 s, measured * s; worse by *% vs bound 100000% relative [[]baseline file "
        "*test-cpu.json (device Test CPU, float32)]; if the change is expected, re-pin with "
        "--glu-update-baselines and review the diff"])


def test_latency_rows_carry_spread_rounds_outliers_and_the_speedup_interval(suite):
    res = _run(suite, "test_copy_latency.py", "--glu-perf-rounds", "6",
               "--benchmark-json", "bench.json", k="ttft")
    res.assert_outcomes(skipped=3)  # no baseline: measured, not compared
    records = {r["variant"]: r for r in records_from_benchmark_json(suite.path / "bench.json")}
    p40 = records["tiny-llama-maw-p40"]
    assert p40["rounds"] == p40["speedup_rounds"] == 6 and p40["q1"] <= p40["value"] <= p40["q3"]
    assert p40["outliers"] >= 0 and p40["speedup_low"] <= p40["speedup"] <= p40["speedup_high"]
    assert p40["speedup_significant"] == (not p40["speedup_low"] <= 1 <= p40["speedup_high"])
    assert p40["speedup_separate"] > 0  # vs the unpruned model's own test: kept beside
    assert (p40["prompt_len"], p40["batch"], p40["layers"], p40["full_layers"]) == (128, 1, 4, 4)
    assert records["tiny-llama-maw-p0"]["speedup_paired"] is False  # the reference itself


TPOT_NOISE = '''
import time

import glu_prune.performance.timing as perf

_start = perf.start_decode


def slow_prefill(model, ids):
    time.sleep(0.3)  # a neighbour's load hitting the prefill
    return _start(model, ids)


def pytest_configure(config):
    perf.start_decode = slow_prefill


def pytest_unconfigure(config):
    perf.start_decode = _start
'''


def test_tpot_is_decode_alone_so_a_slow_prefill_cannot_make_it_negative(suite):
    # the old TPOT, (generate - a separately timed prefill) / (n - 1), went negative when
    # the prefill was the slower one; now the prefill is untimed set-up
    suite.makeconftest(TPOT_NOISE)
    res = _run(suite, "test_copy_latency.py", "--benchmark-json", "bench.json", k="tpot")
    res.assert_outcomes(skipped=3)
    tpots = [r["value"] for r in records_from_benchmark_json(suite.path / "bench.json")]
    # 3 decode steps: a TPOT holding the 0.3 s prefill would be >= 0.1 s
    assert len(tpots) == 3 and all(0 < t < 0.1 for t in tpots)


def test_energy_suite_skips_without_nvml_and_runs_on_a_fake_counter(suite):
    skipped = _run(suite, "test_copy_energy.py")
    skipped.assert_outcomes(skipped=4)
    skipped.stdout.fnmatch_lines(["*no NVIDIA GPU/NVML*"])
    suite.makeconftest(ENERGY_CONFTEST)
    res = _run(suite, "test_copy_energy.py", "--benchmark-json", "bench.json")
    res.assert_outcomes(skipped=4)  # the fake counter measured; no baseline
    records = {(r["variant"], r["benchmark"]): r
               for r in records_from_benchmark_json(suite.path / "bench.json")}
    pre = records[("tiny-llama-maw-p40", "energy-prefill@128")]
    assert pre["unit"] == "J/tok" and pre["kind"] == "energy" and pre["speedup"] is not None
    assert pre["extra"]["idle_power_w"] == 30.0 and pre["extra"]["avg_power_w"] > 0
    assert pre["extra"]["prefill_j_per_token_net"] < pre["value"]
    assert records[("tiny-llama-maw-p0", "energy-decode")]["metric"] == "decode_j_per_token"


def test_benchmark_only_under_xdist_stops_with_the_serial_message(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    # Stops in the controller's configure, before any worker starts.
    res = pytester.runpytest_inprocess("-p", "xdist",
                                       "-n", "2", "--benchmark-only")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*latency/energy benchmarks must run serially*without -n*"])
