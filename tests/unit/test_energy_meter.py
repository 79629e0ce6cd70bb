"""The NVML energy meter against a fake NVML: windows, idle correction, device mapping."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from glu_prune.performance.energy import (EnergyMeter, EnergyUnavailable, EnergyWindow,
                                          decode_joules_per_token, joules_per_token, nvml_index,
                                          sharing_warning)


class FakeNVML:
    """Counter = integral of power over a fake clock; power is busy while a workload runs."""

    class NVMLError(Exception):
        pass

    def __init__(self, uuids=("GPU-aaaa1111", "GPU-bbbb2222", "GPU-bbcc3333"), idle_w=30.0,
                 busy_w=200.0, pids=(), energy_supported=True, init_fails=False):
        self.uuids, self.idle_w, self.busy_w = list(uuids), idle_w, busy_w
        self.now, self.mj, self.pids = 0.0, 1_000_000.0, list(pids)
        self.energy_supported, self.init_fails = energy_supported, init_fails

    # the fake world
    def advance(self, seconds: float, busy: bool) -> None:
        self.mj += 1000.0 * (self.busy_w if busy else self.idle_w) * seconds
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds, busy=False)

    # the pynvml surface the meter uses
    def nvmlInit(self):
        if self.init_fails:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, handle):
        return self.uuids[handle].encode()  # old pynvml returns bytes

    def nvmlDeviceGetName(self, handle):
        return "Fake GPU"

    def nvmlSystemGetDriverVersion(self):
        return "999.1"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy_supported:
            raise self.NVMLError("Not Supported")
        return int(self.mj)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p, usedGpuMemory=1) for p in self.pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        raise self.NVMLError("Not Supported")  # some drivers: must not break the check


def meter_for(nvml: FakeNVML) -> EnergyMeter:
    return EnergyMeter(nvml, 0, clock=nvml.clock, sleep=nvml.sleep, name="Fake GPU")


def test_window_is_extended_until_it_lasts_the_minimum():
    nvml = FakeNVML()
    window = meter_for(nvml).measure(lambda: nvml.advance(0.7, busy=True), min_seconds=5.0)
    assert window.calls == 8  # 7 calls = 4.9 s < 5 s
    assert window.seconds == pytest.approx(5.6)
    assert window.joules == pytest.approx(200.0 * 5.6)
    assert window.watts == pytest.approx(200.0)


def test_a_slow_workload_runs_once():
    nvml = FakeNVML()
    window = meter_for(nvml).measure(lambda: nvml.advance(9.0, busy=True), min_seconds=5.0)
    assert (window.calls, window.seconds) == (1, pytest.approx(9.0))


def test_measure_rejects_a_non_positive_window():
    with pytest.raises(ValueError, match="min_seconds must be > 0, got 0"):
        meter_for(FakeNVML()).measure(lambda: None, min_seconds=0)


def test_idle_power_and_idle_corrected_joules_per_token():
    nvml = FakeNVML(idle_w=30.0, busy_w=200.0)
    meter = meter_for(nvml)
    idle = meter.idle_watts(seconds=5.0)
    assert idle == pytest.approx(30.0)
    window = meter.measure(lambda: nvml.advance(0.5, busy=True), min_seconds=5.0)
    e = joules_per_token(window, tokens_per_call=100, idle_watts=idle)
    assert e["j_per_token"] == pytest.approx(200.0 * 0.5 / 100)  # 1.0 J/token gross
    assert e["j_per_token_net"] == pytest.approx((200.0 - 30.0) * 0.5 / 100)
    assert e["avg_power_w"] == pytest.approx(200.0)
    assert joules_per_token(window, 100, None)["j_per_token_net"] is None


def test_decode_joules_subtract_the_prefill_of_each_generate_call():
    gen = EnergyWindow(joules=100.0, seconds=5.0, calls=10)  # 10 J per generate call
    pre = EnergyWindow(joules=20.0, seconds=5.0, calls=10)  # 2 J per prefill
    e = decode_joules_per_token(gen, pre, new_tokens=5, idle_watts=2.0)
    assert e["j_per_token"] == pytest.approx((10.0 - 2.0) / 4)
    # idle per call is 1 J in both windows, so it cancels in the difference
    assert e["j_per_token_net"] == pytest.approx(((10.0 - 1.0) - (2.0 - 1.0)) / 4)
    with pytest.raises(ValueError, match="new_tokens must be >= 2"):
        decode_joules_per_token(gen, pre, new_tokens=1, idle_watts=None)


@pytest.mark.parametrize("visible, cuda_index, expected", [
    (None, 1, 1),  # nothing hidden: CUDA index = NVML index
    ("", 0, 0),
    ("2,0", 0, 2),  # CUDA renumbers the visible devices from 0; NVML does not
    ("2,0", 1, 0),
    ("GPU-bbbb2222", 0, 1),  # full UUID
    ("GPU-aaaa", 0, 0),  # a unique prefix, as CUDA accepts
    ("1, GPU-bbcc", 1, 2),
])
def test_cuda_visible_devices_maps_to_the_nvml_index(visible, cuda_index, expected):
    assert nvml_index(FakeNVML(), cuda_index, visible=visible) == expected


def test_torch_uuid_wins_over_the_visible_list():
    assert nvml_index(FakeNVML(), 0, visible="0", uuid="bbcc3333") == 2
    assert nvml_index(FakeNVML(), 0, visible="0", uuid="GPU-BBBB2222") == 1


@pytest.mark.parametrize("visible, cuda_index, message", [
    ("GPU-bb", 0, "matches 2 of NVML's GPUs"),
    ("GPU-ffff", 0, "matches 0 of NVML's GPUs"),
    ("MIG-1234", 0, "no energy counter for MIG"),
    ("0", 1, "not among CUDA_VISIBLE_DEVICES='0'"),
    ("7", 0, "NVML index 7 for CUDA device 0 is out of range: NVML sees 3 GPU"),
])
def test_bad_device_mappings_say_what_is_wrong(visible, cuda_index, message):
    with pytest.raises(EnergyUnavailable, match=message):
        nvml_index(FakeNVML(), cuda_index, visible=visible)


def test_open_without_nvml_says_no_nvidia_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(EnergyUnavailable, match="no NVIDIA GPU/NVML: NVML Shared Library"):
        EnergyMeter.open(nvml=FakeNVML(init_fails=True))
    with pytest.raises(EnergyUnavailable, match="GPU 0 has no NVML energy counter"):
        EnergyMeter.open(nvml=FakeNVML(energy_supported=False))
    meter = EnergyMeter.open(0, nvml=FakeNVML(), sync=lambda: None)
    assert (meter.name, meter.driver, meter.index) == ("Fake GPU", "999.1", 0)


def test_other_processes_are_named_and_warned_about():
    own = os.getpid()
    meter = meter_for(FakeNVML(pids=[own, 4242]))
    assert meter.other_processes() == [4242]
    warning = sharing_warning(meter, [4242])
    assert "1 other process(es) on GPU 0 (Fake GPU), pids [4242]" in warning
    assert sharing_warning(meter, []) is None
    assert meter_for(FakeNVML(pids=[own])).other_processes() == []


def test_in_a_container_one_unknown_pid_is_taken_to_be_us():
    # NVML reports host PIDs, so our own PID is missing from its list.
    assert meter_for(FakeNVML(pids=[901])).other_processes(self_on_gpu=True) == []
    assert len(meter_for(FakeNVML(pids=[901, 902])).other_processes(self_on_gpu=True)) == 1
    assert meter_for(FakeNVML(pids=[901])).other_processes(self_on_gpu=False) == [901]
