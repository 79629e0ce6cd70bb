"""One GPU per xdist worker, chosen before CUDA starts.

Worker i takes the i-th entry of the parent's ``CUDA_VISIBLE_DEVICES`` (or GPU i of all
GPUs when it is unset). CUDA reads that variable once, at its first use, so setting it in
the worker's ``pytest_configure`` pins every model the worker builds.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, MutableMapping

LOG = logging.getLogger(__name__)
ENV = "CUDA_VISIBLE_DEVICES"


def nvml_gpu_count() -> int:
    """GPUs NVML sees (0 without an NVIDIA driver); never initializes CUDA."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver / no library: a CPU machine
        return 0


def worker_index(worker_id: str) -> int:
    """``gw3`` -> 3 (xdist's worker ids)."""
    if not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        raise ValueError(f"not an xdist worker id: {worker_id!r} (expected gw<N>)")
    return int(worker_id[2:])


def choose_gpu(worker_id: str, worker_count: int, env: MutableMapping[str, str],
               gpu_count: Callable[[], int] = nvml_gpu_count) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for this worker, or ``None`` on a CPU-only machine.

    Raises ``ValueError`` when there are more workers than GPUs.
    """
    visible = env.get(ENV)
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        devices = [str(i) for i in range(gpu_count())]
    if not devices:
        return None  # CPU run: nothing to pin
    if worker_count > len(devices):
        raise ValueError(f"{worker_count} xdist workers but only {len(devices)} GPUs "
                         f"({ENV}={','.join(devices)}); use -n {len(devices)} or fewer")
    return devices[worker_index(worker_id)]


def pin_worker(worker_id: str, worker_count: int,
               env: MutableMapping[str, str] | None = None,
               gpu_count: Callable[[], int] = nvml_gpu_count) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` for this worker; returns the device (``None``: CPU run)."""
    env = os.environ if env is None else env
    device = choose_gpu(worker_id, worker_count, env, gpu_count)
    if device is not None:
        env[ENV] = device
        LOG.info("xdist worker %s pinned to GPU %s", worker_id, device)
    return device
