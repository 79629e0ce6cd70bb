"""Perf library (settings, ideals, timed calls, judging, records) and the latency/energy
pytest glue end to end (pytester, tiny model, fake NVML)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from glu_prune.models import load_model, make_config
from glu_prune.perf import (PerfContext, PerfModels, PerfVariant, Row, fixed_length_config,
                            generate, ideal_decode_speedup, ideal_prefill_speedup,
                            level_pairs, markdown_table,
                            mlp_block_id, prefill, random_prompt, records_from_benchmark_json,
                            resolve_layers, resolve_settings, timing_stats)
from glu_prune.perf_baselines import (NO_BASELINE, DeviceInfo, PerfBaselineError,
                                      PerfBaselines, compare, prefill_efficiency_floor)

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
    with pytest.raises(ValueError, match="--glu-perf-layers must be a positive integer, got 0"):
        resolve_layers("llama-3.2-1b", 0, "cpu")


def test_settings_defaults_and_bad_values():
    s = resolve_settings(device="cpu")
    assert (s.dtype, s.prompt_lens, s.new_tokens, s.rounds, s.warmup) == \
        ("float32", (128,), 4, 3, 1)
    assert [v.slug for v in s.variants][:3] == ["tiny-llama-maw-p0", "tiny-llama-maw-p40",
                                               "tiny-llama-maw-p40-r64"]
    assert {v.key for v in s.variants} >= {"llama-3.2-1b-maw-p40-r128-2l", "tiny-llama-maw-p0-4l"}
    g = resolve_settings(device="cuda:0", models=["llama-3.2-1b"], prompt_lens=[128, 2048])
    assert (g.dtype, g.new_tokens, g.rounds) == ("bfloat16", 64, 10)
    assert {v.layers for v in g.variants} == {16}
    assert resolve_settings(device="cpu", prompt_lens=[512, 2048]).prompt_lens_for(
        "tiny-llama") == (512,)  # tiny's positions stop at 1024
    with pytest.raises(ValueError, match="--glu-perf-dtype must be a torch dtype name.*'fp8x'"):
        resolve_settings(device="cpu", dtype="fp8x")
    with pytest.raises(ValueError, match="--glu-new-tokens must be >= 2"):
        resolve_settings(device="cpu", new_tokens=1)
    with pytest.raises(ValueError, match="--glu-prompt-lens entries must be a positive"):
        resolve_settings(device="cpu", prompt_lens=[0])
    with pytest.raises(KeyError, match="unknown model 'llama-9b'"):
        resolve_settings(device="cpu", models=["llama-9b"])


def test_mlp_block_ids_carry_slug_and_size():
    s = resolve_settings(device="cpu")
    assert [mlp_block_id(v) for v in s.mlp_blocks()] == [
        "llama-3.2-1b-maw-p0-i8192-T512", "llama-3.2-1b-maw-p10-i7373-T512",
        "llama-3.2-1b-maw-p10-r128-i7424-T512"]
    assert resolve_settings(device="cpu", models=["tiny-llama"]).mlp_blocks() == []


# ---------------------------------------------------------------- ideals


def test_ideal_speedups_follow_flops_and_weight_bytes():
    from glu_prune.prune import expansion_table

    cfg = make_config("llama-3.2-1b")
    prefill_40, decode_40 = ideal_prefill_speedup(cfg, 8192, 4916, 512), \
        ideal_decode_speedup(cfg, 8192, 4916)
    assert 1.3 < prefill_40 < 1.6 and 1.1 < decode_40 < prefill_40
    row = expansion_table(cfg, [40], prompt_len=512)[0]
    assert (prefill_40, decode_40) == (pytest.approx(row["ideal_prefill_speedup"]),
                                       pytest.approx(row["ideal_decode_speedup"]))
    assert ideal_prefill_speedup(cfg, 8192, 8192, 128) == ideal_decode_speedup(cfg, 8192, 8192) == 1


def test_efficiency_floor_only_for_the_aligned_1b_shape_at_40_on_gpu():
    assert prefill_efficiency_floor(2048, 8192, 40, 128, 2048, "cuda") == 0.8
    assert prefill_efficiency_floor(2048, 8192, 40, 1, 2048, "cuda") is None  # unaligned
    assert prefill_efficiency_floor(2048, 8192, 40, 128, 2048, "cpu") is None
    assert prefill_efficiency_floor(2048, 8192, 40, 128, 512, "cuda") is None  # launch-bound
    assert prefill_efficiency_floor(3072, 8192, 40, 128, 2048, "cuda") is None


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


def test_timing_stats_add_p90_to_pytest_benchmark_statistics():
    data = [float(x) for x in range(1, 11)]
    stats = SimpleNamespace(data=data, median=5.5, mean=5.5, min=1.0, max=10.0, rounds=10)
    out = timing_stats(SimpleNamespace(stats=SimpleNamespace(stats=stats)))
    assert out["median_s"] == 5.5 and out["p90_s"] == pytest.approx(9.1)
    one = SimpleNamespace(data=[2.0], median=2.0, mean=2.0, min=2.0, max=2.0, rounds=1)
    assert timing_stats(SimpleNamespace(stats=SimpleNamespace(stats=one)))["p90_s"] == 2.0


# ---------------------------------------------------------------- the perf tolerance rule


@pytest.mark.parametrize("value, higher, verdict", [
    (1.10, False, "ok"), (1.11, False, "regression"), (0.89, False, "improvement"),
    (0.90, True, "ok"), (0.89, True, "regression"), (1.11, True, "improvement"),
])
def test_compare_is_relative_and_knows_direction(value, higher, verdict):
    assert compare(value, 1.0, higher_is_better=higher, rel_tol=0.10 + 1e-9) == verdict


def test_compare_rejects_bad_inputs():
    with pytest.raises(ValueError, match="rel_tol must be a finite number >= 0, got -0.1"):
        compare(1.0, 1.0, higher_is_better=False, rel_tol=-0.1)
    with pytest.raises(ValueError, match="baseline must be > 0, got 0"):
        compare(1.0, 0, higher_is_better=False)


DEV = DeviceInfo("NVIDIA H200", "570.1", "bfloat16")


def test_baselines_absent_then_pinned_then_compared(tmp_path):
    b = PerfBaselines.load(tmp_path, DEV)
    assert b.check("k", "ttft@512", "ttft_median_s", 0.01, "s", higher_is_better=False) == \
        (None, NO_BASELINE)
    pin = PerfBaselines.load(tmp_path, DEV, update=True)
    assert pin.check("k", "ttft@512", "ttft_median_s", 0.01, "s",
                     higher_is_better=False) == (None, "pinned")
    data = json.loads((tmp_path / "nvidia-h200.json").read_text())
    assert (data["device"], data["driver"], data["dtype"]) == ("NVIDIA H200", "570.1", "bfloat16")
    assert data["results"]["k"]["ttft@512"]["ttft_median_s"] == {"value": 0.01, "unit": "s"}
    again = PerfBaselines.load(tmp_path, DEV, tolerance=0.05)
    assert again.check("k", "ttft@512", "ttft_median_s", 0.0106, "s",
                       higher_is_better=False) == (0.01, "regression")
    assert again.check("other", "ttft@512", "ttft_median_s", 1.0, "s",
                       higher_is_better=False)[1] == "no baseline for this variant"
    bf = PerfBaselines.load(tmp_path, DeviceInfo("NVIDIA H200", "570.1", "float32"))
    assert bf.check("k", "ttft@512", "ttft_median_s", 1.0, "s", higher_is_better=False)[1] == \
        f"{NO_BASELINE} in float32 (nvidia-h200.json holds bfloat16)"


def test_corrupt_baseline_files_name_the_field(tmp_path):
    (tmp_path / "nvidia-h200.json").write_text(json.dumps({
        "format": 1, "device": "x", "dtype": "bfloat16",
        "results": {"k": {"tpot": {"tpot_s": {"value": -1}}}}}))
    with pytest.raises(PerfBaselineError, match="results.k.tpot.tpot_s.value must be a number"):
        PerfBaselines.load(tmp_path, DEV)
    (tmp_path / "nvidia-h200.json").write_text("{")
    with pytest.raises(PerfBaselineError, match="not readable JSON"):
        PerfBaselines.load(tmp_path, DEV)
    with pytest.raises(ValueError, match="perf tolerance must be a finite number >= 0"):
        PerfBaselines.load(tmp_path / "none", DEV, tolerance=float("nan"))


# ---------------------------------------------------------------- judging and records


def _bench():
    return SimpleNamespace(extra_info={})


def test_finish_gives_speedup_efficiency_and_schema_records(tmp_path):
    from glu_prune.report_io import Record

    ctx = PerfContext(resolve_settings(device="cpu"), None, PerfBaselines.load(tmp_path, DEV))
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
    ctx = PerfContext(resolve_settings(device="cpu"), None, PerfBaselines.load(tmp_path, DEV))
    rec = {"variant": "v", "benchmark": "tpot", "metric": "tpot_s", "value": 0.2, "unit": "s",
           "baseline": 0.1, "verdict": "regression"}
    assert "v tpot tpot_s = 0.2 s regressed beyond 10% of its baseline 0.1" in ctx.failure(rec)
    assert "--glu-update-baselines" in ctx.failure(rec)
    assert "baseline pinned" in ctx.failure({**rec, "verdict": "pinned", "baseline": None})


# ---------------------------------------------------------------- the pytest glue (pytester)

ENERGY_CONFTEST = '''
import time

import pytest

from glu_prune.energy import EnergyMeter


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
    import glu_prune.pytest_plugin  # noqa: F401
    from glu_prune.prune import prune_glu_mlp

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
        "-p", "glu_prune.pytest_plugin", "--benchmark-only", "--glu-models", "tiny-llama",
        "--glu-baselines-dir", "baselines", "--glu-device-name", "Test CPU",
        "--glu-perf-rounds", "1", "--glu-report", "out", "-k", k, "-rsf", *args)


def test_latency_suite_records_pins_and_catches_a_regression(suite):
    res = _run(suite, "test_copy_latency.py", "--benchmark-json", "bench.json")
    res.assert_outcomes(passed=6)
    res.stdout.fnmatch_lines(["*no baseline for this device (Test CPU, float32)*"])
    records = records_from_benchmark_json(suite.path / "bench.json")
    assert {(r["variant"], r["benchmark"]) for r in records} >= {
        ("tiny-llama-maw-p40", "ttft@128"), ("tiny-llama-maw-p40", "tpot"),
        ("tiny-llama-maw-p0", "throughput@b8")}
    assert all(r["speedup"] is not None and r["ideal_speedup"] for r in records)
    assert "ttft@128" in (suite.path / "out" / "results.md").read_text()

    pinned = _run(suite, "test_copy_latency.py", "--glu-update-baselines")
    pinned.assert_outcomes(failed=6)
    pinned.stdout.fnmatch_lines(["*baseline pinned (--glu-update-baselines)*review the diff*"])
    path = suite.path / "baselines" / "perf" / "test-cpu.json"
    data = json.loads(path.read_text())
    assert data["results"]["tiny-llama-maw-p40-4l"]["tpot"]["tpot_s"]["unit"] == "s"

    _run(suite, "test_copy_latency.py", "--glu-perf-tolerance", "1000").assert_outcomes(passed=6)
    data["results"]["tiny-llama-maw-p40-4l"]["ttft@128"]["ttft_median_s"]["value"] = 1e-9
    path.write_text(json.dumps(data))
    bad = _run(suite, "test_copy_latency.py", "--glu-perf-tolerance", "1000",
               k="ttft and (p0 or p40-L)")
    bad.assert_outcomes(failed=1, passed=1)
    bad.stdout.fnmatch_lines(["*tiny-llama-maw-p40 ttft@128 ttft_median_s = * s regressed "
                              "beyond 100000% of its baseline 1e-09*test-cpu.json*"])


def test_energy_suite_skips_without_nvml_and_runs_on_a_fake_counter(suite):
    skipped = _run(suite, "test_copy_energy.py")
    skipped.assert_outcomes(skipped=4)
    skipped.stdout.fnmatch_lines(["*no NVIDIA GPU/NVML*"])
    suite.makeconftest(ENERGY_CONFTEST)
    res = _run(suite, "test_copy_energy.py", "--benchmark-json", "bench.json")
    res.assert_outcomes(passed=4)
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
    res = pytester.runpytest_inprocess("-p", "glu_prune.pytest_plugin", "-p", "xdist",
                                       "-n", "2", "--benchmark-only")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*latency/energy benchmarks must run serially*without -n*"])
