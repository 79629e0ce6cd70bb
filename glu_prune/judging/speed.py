"""Per-device speed and energy baselines, and the perf tolerance rule (it lives here only).

One JSON file per device, ``baselines/perf/<device-slug>.json``::

    {"format": 1, "device": "NVIDIA H200", "driver": "570.86.15", "dtype": "bfloat16",
     "provenance": {...},
     "results": {"<variant key>": {"<benchmark>": {"<metric>": {"value": 0.0123, "unit": "s"}}}}}

A run is compared only with a file of the same device and dtype; otherwise its numbers
are recorded as having no baseline for this device. Speed on another machine says
nothing about this one, so no file is shared between devices.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_TOLERANCE = 0.10
NO_BASELINE = "no baseline for this device"
MIN_PREFILL_EFFICIENCY = 0.8  # measured/FLOP-ideal prefill speedup, aligned 1B at 40 % (GPU)
EFFICIENCY_MIN_PROMPT_LEN = 2048  # shorter 1B prefills are bound by eager kernel launches


class PerfBaselineError(ValueError):
    """A perf baseline file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class DeviceInfo:
    """The machine a perf number belongs to."""

    name: str
    driver: str
    dtype: str

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def describe_device(device: str, dtype: str, name: str | None = None) -> DeviceInfo:
    """Name, driver and dtype of ``device`` (``name`` overrides the detected name)."""
    import torch

    if str(device).startswith("cuda"):
        index = torch.device(device).index or 0
        detected = torch.cuda.get_device_name(index)
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        except Exception:  # NVML absent: the CUDA runtime version still dates the stack
            driver = f"cuda {torch.version.cuda}"
    else:
        # CPU model names repeat across very different boxes; the core count tells them apart.
        detected = f"{_cpu_name()} ({os.cpu_count()} cores)"
        driver = f"torch {torch.__version__}"
    return DeviceInfo(name or detected, driver, dtype)


def compare(value: float, baseline: float, *, higher_is_better: bool,
            rel_tol: float = DEFAULT_TOLERANCE) -> str:
    """``"regression"``, ``"improvement"`` or ``"ok"``: relative change against ``rel_tol``."""
    if not (math.isfinite(rel_tol) and rel_tol >= 0):
        raise ValueError(f"rel_tol must be a finite number >= 0, got {rel_tol!r}")
    if not baseline > 0:
        raise ValueError(f"baseline must be > 0, got {baseline!r}")
    change = (value - baseline) / baseline
    worse = -change if higher_is_better else change
    if worse > rel_tol:
        return "regression"
    return "improvement" if worse < -rel_tol else "ok"


def prefill_efficiency_floor(model_hidden: int, model_intermediate: int, pct: float,
                             round_to: int, prompt_len: int, device: str) -> float | None:
    """The minimum measured/ideal prefill speedup asserted for this row, or ``None``.

    Only the aligned 40 % variant of the 1B shape (hidden 2048, intermediate 8192) on a
    GPU at long prompts is held to it; everything else is reported, not asserted.
    """
    if (str(device).startswith("cuda") and (model_hidden, model_intermediate) == (2048, 8192)
            and pct == 40 and round_to > 1 and prompt_len >= EFFICIENCY_MIN_PROMPT_LEN):
        return MIN_PREFILL_EFFICIENCY
    return None


@dataclass
class PerfBaselines:
    """The baseline file of one device: look-ups, verdicts and (with ``update``) pinning."""

    directory: Path
    device: DeviceInfo
    tolerance: float = DEFAULT_TOLERANCE
    update: bool = False
    data: dict[str, Any] | None = None
    reason: str = NO_BASELINE
    pinned: int = 0  # values written this run

    @property
    def path(self) -> Path:
        return Path(self.directory) / f"{self.device.slug}.json"

    @classmethod
    def load(cls, directory: str | Path, device: DeviceInfo, *,
             tolerance: float = DEFAULT_TOLERANCE, update: bool = False) -> "PerfBaselines":
        """This device's baselines; a missing file or another dtype means none."""
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"perf tolerance must be a finite number >= 0, got {tolerance!r}")
        self = cls(Path(directory), device, tolerance, update)
        if self.path.is_file():
            data = _read(self.path)
            if data["dtype"] != device.dtype:
                self.reason = (f"{NO_BASELINE} in {device.dtype} ({self.path.name} holds "
                               f"{data['dtype']})")
            else:
                self.data = data
        return self

    def lookup(self, key: str, benchmark: str, metric: str) -> float | None:
        if self.data is None:
            return None
        entry = self.data["results"].get(key, {}).get(benchmark, {}).get(metric)
        return None if entry is None else float(entry["value"])

    def check(self, key: str, benchmark: str, metric: str, value: float, unit: str, *,
              higher_is_better: bool) -> tuple[float | None, str]:
        """``(baseline, verdict)``; with ``update`` the value is pinned (verdict ``"pinned"``)."""
        base = self.lookup(key, benchmark, metric)
        if self.update:
            self.pin(key, benchmark, metric, value, unit)
            return base, "pinned"
        if base is None:
            return None, self.reason if self.data is None else "no baseline for this variant"
        return base, compare(value, base, higher_is_better=higher_is_better,
                             rel_tol=self.tolerance)

    def pin(self, key: str, benchmark: str, metric: str, value: float, unit: str) -> Path:
        """Write one value into this device's file now (other entries kept)."""
        from glu_prune.evaluation.harness import atomic_write_text

        if not (math.isfinite(value) and value > 0):
            raise PerfBaselineError(f"refusing to pin {key}.{benchmark}.{metric} = {value!r} "
                                    f"(baselines must be finite numbers > 0)")
        if self.data is None:
            if self.path.is_file():
                LOG.warning("%s holds another dtype; replacing it with %s baselines",
                            self.path, self.device.dtype)
            self.data = {"format": FORMAT, "device": self.device.name, "dtype": self.device.dtype,
                         "driver": self.device.driver, "results": {},
                         "provenance": {"source": "glu-prune perf run (--glu-update-baselines)"}}
        self.data["driver"] = self.device.driver  # the driver the pinned numbers came from
        entry = {"value": _round(value), "unit": unit}
        self.data["results"].setdefault(key, {}).setdefault(benchmark, {})[metric] = entry
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        self.pinned += 1
        return self.path


def _round(x: float) -> float:
    return float(f"{x:.6g}")  # six significant digits: timings are not more precise than that


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PerfBaselineError(f"{path}: not readable JSON ({exc})") from exc
    for name in ("format", "device", "dtype", "results"):
        if name not in data:
            raise PerfBaselineError(f"{path}: missing field {name!r}; expected "
                                    f"format, device, driver, dtype, results")
    if data["format"] != FORMAT:
        raise PerfBaselineError(f"{path}: format {data['format']!r} is not {FORMAT}")
    for key, benches in data["results"].items():
        for bench, metrics in benches.items():
            for metric, entry in metrics.items():
                value = entry.get("value") if isinstance(entry, dict) else None
                if not isinstance(value, (int, float)) or not value > 0:
                    raise PerfBaselineError(f"{path}: results.{key}.{bench}.{metric}.value "
                                            f"must be a number > 0, got {value!r}")
    return data
