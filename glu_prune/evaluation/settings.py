"""How an lm-eval run is set up and what it returns: the settings that change scores,
the measured values, and the cache key built from both.

A cache key holds the model's content identity, the task's content fingerprint (its
resolved definition and the documents evaluated) and every setting that changes scores,
so a hit means the same model on the same test (``glu_prune.evaluation.identity``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import version
from typing import Any, Sequence

from glu_prune.catalog.benchmarks import Benchmark

CACHE_FORMAT = 2  # bump when the cached record's layout changes (2: content keys)
PYTHON_SEED = 0  # lm-eval's defaults: random 0, numpy/torch/fewshot 1234

__all__ = ["BenchResult", "CACHE_FORMAT", "EvalSettings", "MetricValue", "PYTHON_SEED",
           "cache_key", "lm_eval_version", "run_settings"]


@lru_cache(maxsize=1)
def lm_eval_version() -> str:
    """The installed lm-eval version (recorded with every result; part of the cache key)."""
    return version("lm_eval")


@dataclass(frozen=True)
class EvalSettings:
    """Everything about an lm-eval run that can change its scores, fixed and recorded."""

    batch_size: int = 16  # fixed, never "auto": padding differs with batch size
    limit: int | None = None  # lm-eval's limit (examples per task); None = full test sets
    chat_template: bool = False  # the published runs applied none, even for instruct models
    max_length: int | None = None  # None = the model config's context length (as the study)
    seed: int = 1234  # numpy, torch and few-shot sampler seeds
    bootstrap_iters: int = 1000  # stderr of non-mean metrics only; mean stderrs are exact

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be None or an integer >= 1, got {self.limit!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int)
                                            or self.max_length < 1):
            raise ValueError(f"max_length must be None or an integer >= 1, "
                             f"got {self.max_length!r}")
        if not isinstance(self.bootstrap_iters, int) or self.bootstrap_iters < 1:
            # 0 would turn off every stderr, and comparisons need them
            raise ValueError(f"bootstrap_iters must be an integer >= 1, "
                             f"got {self.bootstrap_iters!r}")

    def record(self) -> dict[str, Any]:
        """The settings as stored beside each result (with the lm-eval version and seeds)."""
        return {**asdict(self), "lm_eval_version": lm_eval_version(),
                "python_seed": PYTHON_SEED}


@dataclass(frozen=True)
class MetricValue:
    """One measured number with its standard error and sample count."""

    value: float
    stderr: float | None
    n: int | None

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _metric_from_json(key: str, entry: Any) -> MetricValue:
    """A cached metric, or ValueError naming the field that is not one."""
    if not isinstance(entry, dict):
        raise ValueError(f"metrics.{key}: expected an object, got {entry!r}")
    value, se, n = entry.get("value"), entry.get("stderr"), entry.get("n")
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"metrics.{key}.value: expected a finite number, got {value!r}")
    if se is not None and (not _is_number(se) or not math.isfinite(se)):
        raise ValueError(f"metrics.{key}.stderr: expected a finite number or null, "
                         f"got {se!r}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"metrics.{key}.n: expected an integer >= 1 or null, got {n!r}")
    return MetricValue(float(value), None if se is None else float(se), n)


@dataclass
class BenchResult:
    """One benchmark's measured metrics for one variant, with the settings it ran under."""

    slug: str
    benchmark: str
    task: str
    metrics: dict[str, MetricValue]
    settings: dict[str, Any]  # task, num_fewshot, limit, identities, batch size, ...
    cached: bool = False  # came from the on-disk cache (no model time spent)

    def to_json(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "slug": self.slug, "benchmark": self.benchmark,
                "task": self.task, "settings": self.settings,
                "metrics": {k: asdict(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, data: Any, metrics: Sequence[str] = ()) -> BenchResult:
        """Parse a cached record; ValueError names what is wrong (also a missing metric
        of ``metrics``)."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"cache format {data.get('format')!r}, expected {CACHE_FORMAT}")
        for key, kind in (("slug", str), ("benchmark", str), ("task", str),
                          ("settings", dict), ("metrics", dict)):
            if not isinstance(data.get(key), kind):
                raise ValueError(f"{key}: expected {kind.__name__}, got {data.get(key)!r}")
        parsed = {k: _metric_from_json(k, v) for k, v in data["metrics"].items()}
        missing = [m for m in metrics if m not in parsed]
        if missing:
            raise ValueError(f"metrics: missing {', '.join(missing)}; has "
                             f"{', '.join(parsed) or 'none'}")
        return cls(data["slug"], data["benchmark"], data["task"], parsed, data["settings"],
                   cached=True)


# ---------------------------------------------------------------- cache keys


def run_settings(benchmark: Benchmark, settings: EvalSettings, identity: str,
                 task_hash: str | None = None) -> dict[str, Any]:
    """The full record of how ``benchmark`` is run: the cache key's content.

    ``identity`` is the model's content identity, ``task_hash`` the task's content
    fingerprint (``glu_prune.evaluation.identity``); both are stored beside each result.
    """
    return {"task": benchmark.task, "num_fewshot": benchmark.num_fewshot,
            **settings.record(), "model_identity": identity, "task_hash": task_hash}


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute a score (numerics and lm-eval's code)."""
    return {name: version(name) for name in ("torch", "transformers", "lm_eval")}


def cache_key(slug: str, benchmark: str, settings_record: dict[str, Any]) -> str:
    """Hex key of (variant, benchmark, settings, library versions); any change in them is a
    new entry (another torch or transformers can change the numbers)."""
    blob = json.dumps({"slug": slug, "benchmark": benchmark, **settings_record,
                       "versions": library_versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
