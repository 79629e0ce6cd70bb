"""NVML energy meter: joules from the GPU's total-energy counter, idle power, GPU sharing.

The counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded) ticks
about every 100 ms, so a window must last seconds: the workload is repeated until it
does. Every NVML call goes through an injectable module object, so tests use a fake.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

LOG = logging.getLogger(__name__)

MIN_WINDOW_S = 5.0  # 50 counter ticks: the tick (~100 ms) is then <= 2 % of the window
IDLE_WINDOW_S = 5.0


class EnergyUnavailable(RuntimeError):
    """No usable NVML energy counter here; the message says why."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _norm_uuid(uuid: str) -> str:
    """``GPU-8932f937-...`` and ``8932f937-...`` name the same device."""
    u = _text(uuid).strip().lower()
    return u[4:] if u.startswith("gpu-") else u


def nvml_index(nvml: Any, cuda_index: int, *, visible: str | None,
               uuid: str | None = None) -> int:
    """NVML index of CUDA device ``cuda_index`` (NVML ignores ``CUDA_VISIBLE_DEVICES``).

    ``uuid`` (torch's device UUID) is matched first: it is unambiguous. Otherwise the
    ``visible`` entry for ``cuda_index`` is used: an integer is taken as the NVML index
    (exact when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML's own order), a ``GPU-`` UUID or
    a prefix of one is looked up. ``MIG-`` instances have no energy counter.
    """
    count = int(nvml.nvmlDeviceGetCount())
    uuids = [_norm_uuid(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
             for i in range(count)]
    if uuid:
        want = _norm_uuid(uuid)
        if want in uuids:
            return uuids.index(want)
        LOG.info("torch UUID %s not among NVML's %s; falling back to CUDA_VISIBLE_DEVICES",
                 uuid, uuids)
    if visible is None or not visible.strip():
        index = cuda_index
    else:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if not 0 <= cuda_index < len(entries):
            raise EnergyUnavailable(f"CUDA device {cuda_index} is not among "
                                    f"CUDA_VISIBLE_DEVICES={visible!r} ({len(entries)} visible)")
        entry = entries[cuda_index]
        if entry.lower().startswith("mig-"):
            raise EnergyUnavailable(f"CUDA device {cuda_index} is MIG instance {entry}: "
                                    f"NVML has no energy counter for MIG instances")
        if entry.isdigit():
            index = int(entry)
        else:
            hits = [i for i, u in enumerate(uuids) if u.startswith(_norm_uuid(entry))]
            if len(hits) != 1:
                raise EnergyUnavailable(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches "
                                        f"{len(hits)} of NVML's GPUs {uuids}; expected one")
            index = hits[0]
    if not 0 <= index < count:
        raise EnergyUnavailable(f"NVML index {index} for CUDA device {cuda_index} is out of "
                                f"range: NVML sees {count} GPU(s)")
    return index


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one measured window of ``calls`` repetitions of a workload."""

    joules: float
    seconds: float
    calls: int

    @property
    def watts(self) -> float:
        return self.joules / self.seconds

    def per_call(self, idle_watts: float = 0.0) -> float:
        """Joules per call; with ``idle_watts``, what the GPU drew above idle."""
        return (self.joules - idle_watts * self.seconds) / self.calls


def joules_per_token(window: EnergyWindow, tokens_per_call: int,
                     idle_watts: float | None) -> dict[str, float | None]:
    """Gross and idle-corrected J/token of a window, and its average power."""
    net = None if idle_watts is None else window.per_call(idle_watts) / tokens_per_call
    return {"j_per_token": window.per_call() / tokens_per_call, "j_per_token_net": net,
            "avg_power_w": window.watts}


def decode_joules_per_token(generate: EnergyWindow, prefill: EnergyWindow, new_tokens: int,
                            idle_watts: float | None) -> dict[str, float | None]:
    """J per decoded token: (generate − its prefill) / (new_tokens − 1), as TPOT is timed.

    A ``generate`` call of N new tokens is one prefill (which yields token 1) and N − 1
    decode steps.
    """
    if new_tokens < 2:
        raise ValueError(f"new_tokens must be >= 2 to isolate decode, got {new_tokens}")
    gross = (generate.per_call() - prefill.per_call()) / (new_tokens - 1)
    net = None if idle_watts is None else \
        (generate.per_call(idle_watts) - prefill.per_call(idle_watts)) / (new_tokens - 1)
    return {"j_per_token": gross, "j_per_token_net": net, "avg_power_w": generate.watts}


class EnergyMeter:
    """Reads NVML energy counters around synchronized workloads: one GPU's, or the sum
    over every GPU a placed model spans (``more``: their (NVML index, handle) pairs)."""

    def __init__(self, nvml: Any, handle: Any, *, sync: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep, name: str = "",
                 driver: str = "", index: int = 0,
                 more: Sequence[tuple[int, Any]] = ()) -> None:
        self.nvml, self.handle, self.sync = nvml, handle, sync
        self.clock, self.sleep = clock, sleep
        self.name, self.driver, self.index = name, driver, index
        self.handles = (handle, *(h for _, h in more))
        self.indices = (index, *(i for i, _ in more))

    @classmethod
    def open_all(cls, cuda_indices: Sequence[int], *, nvml: Any = None) -> "EnergyMeter":
        """One meter summing the counters of CUDA devices ``cuda_indices`` (a placed model's
        GPUs), syncing them all; ``EnergyUnavailable`` names the first that has none."""
        if not cuda_indices:
            raise EnergyUnavailable("no GPU to meter: the placement uses none")
        meters = [cls.open(i, nvml=nvml) for i in cuda_indices]
        first, syncs = meters[0], [m.sync for m in meters]

        def sync_all() -> None:
            for sync in syncs:
                sync()
        return cls(first.nvml, first.handle, sync=sync_all, name=first.name,
                   driver=first.driver, index=first.index,
                   more=[(m.index, m.handle) for m in meters[1:]])

    @classmethod
    def open(cls, cuda_index: int = 0, *, nvml: Any = None,
             sync: Callable[[], None] | None = None) -> "EnergyMeter":
        """Meter for CUDA device ``cuda_index``; raises ``EnergyUnavailable`` with the reason."""
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as exc:
                raise EnergyUnavailable("no NVIDIA GPU/NVML: pynvml (nvidia-ml-py) is not "
                                        "installed") from exc
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise EnergyUnavailable(f"no NVIDIA GPU/NVML: {exc}") from exc
        uuid, torch_sync = None, sync
        try:
            import torch

            if torch.cuda.is_available():
                uuid = str(getattr(torch.cuda.get_device_properties(cuda_index), "uuid", ""))
                torch_sync = sync or (lambda: torch.cuda.synchronize(cuda_index))
        except ImportError:
            pass
        index = nvml_index(nvml, cuda_index, visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
                           uuid=uuid)
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:  # pre-Volta GPUs and MIG have no counter
            raise EnergyUnavailable(f"GPU {index} has no NVML energy counter: {exc}") from exc
        return cls(nvml, handle, sync=torch_sync or (lambda: None),
                   name=_text(nvml.nvmlDeviceGetName(handle)),
                   driver=_text(nvml.nvmlSystemGetDriverVersion()), index=index)

    def read_joules(self) -> float:
        """Joules on the counters of every metered GPU, summed."""
        return sum(float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))
                   for h in self.handles) / 1000.0

    def measure(self, workload: Callable[[], Any], *, min_seconds: float = MIN_WINDOW_S,
                max_calls: int = 1_000_000) -> EnergyWindow:
        """Repeat ``workload`` until the window lasts ``min_seconds`` (device synced at both
        ends and after each call, so the counter is read after the work it covers)."""
        if min_seconds <= 0:
            raise ValueError(f"min_seconds must be > 0, got {min_seconds!r}")
        self.sync()
        e0, t0 = self.read_joules(), self.clock()
        calls = 0
        while calls < max_calls:
            workload()
            calls += 1
            self.sync()
            if self.clock() - t0 >= min_seconds:
                break
        e1, t1 = self.read_joules(), self.clock()
        return EnergyWindow(joules=e1 - e0, seconds=t1 - t0, calls=calls)

    def idle_watts(self, seconds: float = IDLE_WINDOW_S) -> float:
        """Average power with nothing submitted (measure once per run)."""
        self.sync()
        e0, t0 = self.read_joules(), self.clock()
        self.sleep(seconds)
        e1, t1 = self.read_joules(), self.clock()
        return (e1 - e0) / (t1 - t0)

    def other_processes(self, *, self_on_gpu: bool = True) -> list[int]:
        """PIDs of other processes on this GPU (their load pollutes timings and joules).

        In a container NVML reports host PIDs, so our own PID may not be listed: then one
        unknown PID is taken to be us when ``self_on_gpu``.
        """
        pids: set[int] = set()
        for getter in ("nvmlDeviceGetComputeRunningProcesses",
                       "nvmlDeviceGetGraphicsRunningProcesses"):
            for handle in self.handles:
                try:
                    pids.update(int(p.pid) for p in getattr(self.nvml, getter)(handle))
                except Exception as exc:  # not supported on some drivers: less information
                    LOG.debug("%s failed: %s", getter, exc)
        own = os.getpid()
        if own in pids:
            return sorted(pids - {own})
        others = sorted(pids)
        return others[1:] if self_on_gpu and others else others


def sharing_warning(meter: EnergyMeter, pids: list[int]) -> str | None:
    """The line to put in the results when other processes share the GPU, else ``None``."""
    if not pids:
        return None
    gpus = ",".join(map(str, meter.indices))
    return (f"{len(pids)} other process(es) on GPU {gpus} ({meter.name}), pids "
            f"{pids}: timings and joules include their load")
