"""Speed baselines keep the conditions they were measured under, refuse other conditions
and old formats, and merge concurrent pins under the baseline lock (issue 19, 1 and 3)."""

from __future__ import annotations

import json
import multiprocessing
from types import SimpleNamespace

import pytest

from glu_prune.evaluation import MetricValue
from glu_prune.judging import Check, DeviceInfo, JudgingError, SpeedBaselines, Subject, judge
from glu_prune.performance.settings import PerfVariant, resolve_settings
from glu_prune.performance.stats import Row
from glu_prune.plugin.perf_session import PerfContext

DEV = DeviceInfo("Test CPU", "torch x", "float32")


def _check(key: str, value: float = 0.1) -> Check:
    return Check(Subject("tiny-llama", key, "tpot", "tpot_s"), MetricValue(value, None, None),
                 "latency", "lower", "s")


def _node():
    return SimpleNamespace(user_properties=[], nodeid="t::x")


def _bench():
    return SimpleNamespace(extra_info={})


def test_a_run_under_other_conditions_fails_naming_them_and_how_to_repin(tmp_path):
    v = PerfVariant("tiny-llama", 40, layers=4, full_layers=4)
    row = Row("tpot", "tpot_s", 0.1, "s", conditions={"prompt_len": 32, "batch": 1})
    pin = PerfContext(resolve_settings(device="cpu", new_tokens=4), None,
                      SpeedBaselines.load(tmp_path, DEV, update=True))
    pin.finish(row, v, _bench(), _node())
    entry = json.loads((tmp_path / "test-cpu.json").read_text())["results"][
        "tiny-llama-maw-p40-4l"]["tpot"]["tpot_s"]
    assert {"new_tokens", "decode_prompt_len", "prompt_len", "batch", "threads", "dtype",
            "layers", "torch", "cuda", "device", "driver"} <= set(entry["conditions"])
    same = PerfContext(resolve_settings(device="cpu", new_tokens=4), None,
                       SpeedBaselines.load(tmp_path, DEV))
    rec = same.finish(row, v, _bench(), _node())
    assert rec["verdict"] == "ok" and same.failure(rec) is None and same.absent(rec) is None
    # the same numbers at 32 new tokens: a 2x "improvement" or regression that means nothing
    other = PerfContext(resolve_settings(device="cpu", new_tokens=32), None,
                        SpeedBaselines.load(tmp_path, DEV))
    rec = other.finish(row, v, _bench(), _node())
    message = other.failure(rec)
    assert message is not None and "\n" not in message
    assert "new_tokens 4 vs 32" in message and "--glu-update-baselines" in message
    assert rec["baseline"] is None and other.absent(rec) is None  # a failure, not a skip


def test_no_baseline_is_a_skip_reason_never_a_pass(tmp_path):
    v = PerfVariant("tiny-llama", 0, layers=4, full_layers=4)
    ctx = PerfContext(resolve_settings(device="cpu"), None, SpeedBaselines.load(tmp_path, DEV))
    rec = ctx.finish(Row("tpot", "tpot_s", 0.1, "s"), v, _bench(), _node())
    assert ctx.failure(rec) is None
    assert ctx.absent(rec).startswith("no baseline for this device")


def test_an_old_format_file_is_refused_with_how_to_repin_and_replaced_by_a_pin(tmp_path):
    (tmp_path / "test-cpu.json").write_text(json.dumps({
        "format": 1, "device": "Test CPU", "dtype": "float32", "driver": "x",
        "results": {"k": {"tpot": {"tpot_s": {"value": 0.1, "unit": "s"}}}}}))
    with pytest.raises(JudgingError, match="format 1 records no measuring conditions.*"
                                           "re-pin with --glu-update-baselines"):
        SpeedBaselines.load(tmp_path, DEV)
    b = SpeedBaselines.load(tmp_path, DEV, update=True)
    judge([_check("k2")], b, b.tolerance, update=True, settings={"new_tokens": 4})
    data = json.loads((tmp_path / "test-cpu.json").read_text())
    assert data["format"] == 2 and list(data["results"]) == ["k2"]


def _pin(directory: str, keys: list[str], start) -> None:
    start.wait()  # both processes pin at once
    for key in keys:
        b = SpeedBaselines.load(directory, DEV, update=True)  # read before the other writes
        judge([_check(key)], b, b.tolerance, update=True, settings={"new_tokens": 4})


def test_two_pins_into_one_device_file_lose_nothing(tmp_path):
    """Two runs pinning levels 0,10 and 0,40 (as two processes, at once) keep all three."""
    first, second = (SpeedBaselines.load(tmp_path, DEV, update=True) for _ in range(2))
    first.pin([_check("p0"), _check("p10")], {})  # both runs loaded before either pinned
    second.pin([_check("p0"), _check("p40")], {})
    assert set(json.loads((tmp_path / "test-cpu.json").read_text())["results"]) == {
        "p0", "p10", "p40"}
    mp = multiprocessing.get_context("spawn")
    start = mp.Barrier(2)
    runs = [mp.Process(target=_pin, args=(str(tmp_path), [f"{name}-{i}" for i in range(15)],
                                          start)) for name in ("p10", "p40")]
    for p in runs:
        p.start()
    for p in runs:
        p.join(60)
        assert p.exitcode == 0
    keys = set(json.loads((tmp_path / "test-cpu.json").read_text())["results"])
    assert keys == {"p0", "p10", "p40"} | {f"{n}-{i}" for n in ("p10", "p40") for i in range(15)}


def test_require_baselines_makes_a_speed_test_without_baseline_fail(tmp_path):
    v = PerfVariant("tiny-llama", 0, layers=4, full_layers=4)
    ctx = PerfContext(resolve_settings(device="cpu"), None, SpeedBaselines.load(tmp_path, DEV),
                      require_baselines=True)
    rec = ctx.finish(Row("tpot", "tpot_s", 0.1, "s"), v, _bench(), _node())
    assert ctx.absent(rec) is None
    assert ctx.failure(rec).startswith("no baseline for this device")
    assert ctx.failure(rec).endswith("[--glu-require-baselines: measuring nothing is a failure]")
