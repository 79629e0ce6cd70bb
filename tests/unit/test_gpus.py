"""GPU pinning of xdist workers, with fake environments."""

from __future__ import annotations

import pytest

from glu_prune.plugin.gpus import ENV, choose_gpu, pin_worker, worker_index


def _no_nvml() -> int:
    raise AssertionError("NVML must not be asked when CUDA_VISIBLE_DEVICES is set")


def test_list_from_parent_env():
    env = {ENV: "3,5,7"}
    assert [choose_gpu(f"gw{i}", 3, env, _no_nvml) for i in range(3)] == ["3", "5", "7"]


def test_uuid_entries_pass_through():
    env = {ENV: "GPU-aaaa, GPU-bbbb"}
    assert choose_gpu("gw1", 2, env, _no_nvml) == "GPU-bbbb"


def test_unset_uses_all_gpus():
    assert choose_gpu("gw2", 4, {}, lambda: 4) == "2"


def test_more_workers_than_gpus_is_an_error():
    with pytest.raises(ValueError, match=r"4 xdist workers but only 2 GPUs "
                                         r"\(CUDA_VISIBLE_DEVICES=0,1\); use -n 2 or fewer"):
        choose_gpu("gw0", 4, {ENV: "0,1"}, _no_nvml)
    with pytest.raises(ValueError, match="3 xdist workers but only 2 GPUs"):
        choose_gpu("gw0", 3, {}, lambda: 2)


def test_cpu_machine_pins_nothing():
    env: dict[str, str] = {}
    assert pin_worker("gw1", 2, env, lambda: 0) is None
    assert ENV not in env


def test_pin_sets_env():
    env = {ENV: "4,6"}
    assert pin_worker("gw1", 2, env, _no_nvml) == "6"
    assert env[ENV] == "6"


def test_worker_index():
    assert worker_index("gw12") == 12
    with pytest.raises(ValueError, match="not an xdist worker id: 'master'"):
        worker_index("master")
