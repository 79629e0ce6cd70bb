"""Per-device speed and energy baselines: the device, the file format, look-up and pinning.

One JSON file per device, ``baselines/perf/<device-slug>.json``::

    {"format": 2, "device": "NVIDIA H200", "provenance": {...},
     "results": {"<variant key>": {"<benchmark>": {"<metric>": {
         "value": 0.0123, "unit": "s",
         "conditions": {"new_tokens": 64, "prompt_len": 128, "batch": 1, "threads": 16,
                        "dtype": "bfloat16", "layers": 16, "torch": "2.13.0",
                        "cuda": "12.8", "device": "NVIDIA H200", "driver": "570.86.15"}}}}}}

Each value keeps the conditions it was measured under (everything that changes the
number); a run under other conditions is never compared with it (``conditions_mismatch``).
Speed on another machine says nothing about this one, so no file is shared between devices.
Pins re-read and merge the file under a lock, so concurrent pins lose nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from glu_prune.evaluation import MetricValue, atomic_write_text
from glu_prune.judging.rules import DEFAULT_SPEED_TOLERANCE, Tolerance
from glu_prune.judging.locking import locked
from glu_prune.judging.verdict import UPDATE_FLAG, Check, JudgingError, Subject

LOG = logging.getLogger(__name__)

FORMAT = 2  # 2: every value keeps its measuring conditions
DEFAULT_TOLERANCE = DEFAULT_SPEED_TOLERANCE
NO_BASELINE = "no baseline for this device"
NO_VARIANT = "no baseline for this variant"
OLD_FORMAT = (f"format {{found}} records no measuring conditions (new tokens, threads, ...), so "
              f"its numbers cannot be compared; re-pin with {UPDATE_FLAG} and review the diff")


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


def _nvidia_driver() -> str:
    """The NVIDIA driver version, or the CUDA runtime's when NVML is absent."""
    try:
        import pynvml  # optional: only GPU machines have it

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        return driver.decode() if isinstance(driver, bytes) else str(driver)
    except Exception:  # NVML absent: the CUDA runtime version still dates the stack
        return f"cuda {torch.version.cuda}"


def describe_device(device: str, dtype: str, name: str | None = None) -> DeviceInfo:
    """Name, driver and dtype of ``device`` (``name`` overrides the detected name)."""
    if str(device).startswith("cuda"):
        index = torch.device(device).index or 0
        detected = torch.cuda.get_device_name(index)
        driver = _nvidia_driver()
    else:
        # CPU model names repeat across very different boxes; the core count tells them apart.
        detected = f"{_cpu_name()} ({os.cpu_count()} cores)"
        driver = f"torch {torch.__version__}"
    return DeviceInfo(name or detected, driver, dtype)


def _tolerance(tolerance: float | Tolerance) -> Tolerance:
    if isinstance(tolerance, Tolerance):
        return tolerance
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance)
            and tolerance >= 0):
        raise ValueError(f"perf tolerance must be a finite number >= 0, got {tolerance!r}")
    return Tolerance(speed_rel=float(tolerance))


@dataclass
class SpeedBaselines:
    """The baseline file of one device: look-ups and pinning, keyed by ``PerfVariant.key``."""

    directory: Path
    device: DeviceInfo
    tolerance: Tolerance = field(default_factory=Tolerance)
    update: bool = False
    data: dict[str, Any] | None = None
    reason: str = NO_BASELINE
    pinned: int = 0  # values written this run

    @property
    def path(self) -> Path:
        return Path(self.directory) / f"{self.device.slug}.json"

    @property
    def source(self) -> str:
        """The file and what it must match, for messages."""
        return f"{self.path} (device {self.device.name}, {self.device.dtype})"

    @classmethod
    def load(cls, directory: str | Path, device: DeviceInfo, *,
             tolerance: float | Tolerance = DEFAULT_TOLERANCE,
             update: bool = False) -> SpeedBaselines:
        """This device's baselines (a missing file means none). ``tolerance`` is a
        ``Tolerance`` or its ``speed_rel``. A file of an older format is refused with how
        to re-pin, unless ``update`` (the pin replaces it)."""
        self = cls(Path(directory), device, _tolerance(tolerance), update)
        if self.path.is_file():
            self.data = _read(self.path, replaceable=update)
        return self

    def conditions_mismatch(self, subject: Subject, run: Mapping[str, Any]) -> str:
        """One line naming the conditions under which ``subject``'s baseline was measured
        that differ from this run's ``run`` conditions (baseline vs run), or ""."""
        if self.data is None:
            return ""
        entry = self.data["results"].get(subject.variant, {}).get(subject.benchmark, {}).get(
            subject.metric)
        if entry is None:
            return ""
        pinned = entry["conditions"]
        diffs = [f"{k} {pinned.get(k)!r} vs {run.get(k)!r}"
                 for k in sorted(set(pinned) | set(run)) if pinned.get(k) != run.get(k)]
        if not diffs:
            return ""
        return (f"{subject}: baseline measured under other conditions ({'; '.join(diffs)}; "
                f"baseline vs this run) in {self.path}, so it is not compared: rerun under "
                f"the baseline's conditions, or re-pin with {UPDATE_FLAG} and review the diff")

    def lookup(self, key: str, benchmark: str, metric: str) -> float | None:
        """The pinned value of one metric, or None."""
        if self.data is None:
            return None
        entry = self.data["results"].get(key, {}).get(benchmark, {}).get(metric)
        return None if entry is None else float(entry["value"])

    def get(self, subject: Subject) -> MetricValue | None:
        """The baseline of ``subject`` (its variant is the ``PerfVariant.key``)."""
        value = self.lookup(subject.variant, subject.benchmark, subject.metric)
        return None if value is None else MetricValue(value, None, None)

    def why_absent(self, subject: Subject | None = None) -> str:
        """No file for this device and dtype, or no entry for this variant."""
        return self.reason if self.data is None else NO_VARIANT

    def pin(self, checks: Sequence[Check], settings: Mapping[str, Any] | None = None) -> str:
        """Write the measured values of ``checks``, measured under the conditions
        ``settings``, into this device's file now: under a lock, the file is re-read and
        merged (other entries, also those another run pinned meanwhile, kept).
        Returns "" (a speed pin changes nothing else)."""
        for c in checks:
            s, value = c.subject, c.run.value
            if not (math.isfinite(value) and value > 0):
                raise JudgingError(f"refusing to pin {s.variant}.{s.benchmark}.{s.metric} = "
                                   f"{value!r} (baselines must be finite numbers > 0)")
        conditions = _conditions(settings or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.parent):
            data = self._fresh()
            for c in checks:
                s = c.subject
                entry = {"value": _round(c.run.value), "unit": c.unit, "conditions": conditions}
                data["results"].setdefault(s.variant, {}).setdefault(s.benchmark, {})[
                    s.metric] = entry
            atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        self.data = data
        self.pinned += len(checks)
        return ""

    def _fresh(self) -> dict[str, Any]:
        """The file as it is on disk now (another run may have pinned), or a skeleton."""
        data = _read(self.path, replaceable=True) if self.path.is_file() else None
        if data is None:
            data = {"format": FORMAT, "device": self.device.name, "results": {},
                    "provenance": {"source": "glu-prune perf run (--glu-update-baselines)"}}
        return data


def _conditions(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able measuring conditions of a pin (scalars only)."""
    out = {}
    for k, v in settings.items():
        if not (v is None or isinstance(v, (str, int, float, bool))):
            raise JudgingError(f"measuring condition {k!r} must be a scalar, got {v!r}")
        out[str(k)] = v
    return out


def _round(x: float) -> float:
    return float(f"{x:.6g}")  # six significant digits: timings are not more precise than that


def _read(path: Path, replaceable: bool = False) -> dict[str, Any] | None:
    """The checked file; None for an older format when ``replaceable`` (a pin replaces it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise JudgingError(f"{path}: not readable JSON ({exc})") from exc
    if isinstance(data, dict) and data.get("format") != FORMAT and replaceable:
        LOG.warning("%s: %s; replacing it", path, OLD_FORMAT.format(found=data.get("format")))
        return None
    for name in ("format", "device", "results"):
        if not isinstance(data, dict) or name not in data:
            raise JudgingError(f"{path}: missing field {name!r}; expected "
                               f"format, device, provenance, results")
    if data["format"] != FORMAT:
        raise JudgingError(f"{path}: {OLD_FORMAT.format(found=repr(data['format']))}")
    for key, benches in data["results"].items():
        for bench, metrics in benches.items():
            for metric, entry in metrics.items():
                value = entry.get("value") if isinstance(entry, dict) else None
                where = f"{path}: results.{key}.{bench}.{metric}"
                if not isinstance(value, (int, float)) or not value > 0:
                    raise JudgingError(f"{where}.value must be a number > 0, got {value!r}")
                if not isinstance(entry.get("conditions"), dict):
                    raise JudgingError(f"{where}.conditions must be an object of the measuring "
                                       f"conditions, got {entry.get('conditions')!r}")
    return data
