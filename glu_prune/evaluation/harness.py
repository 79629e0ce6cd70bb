"""lm-eval on an in-memory (pruned) model, one benchmark at a time, with a result cache.

The unit of work is one benchmark of one variant: it is evaluated in its own lm-eval
call, cached as soon as it finishes and fails on its own, so a missing dependency of one
task or an interrupted run costs at most that benchmark. Per variant the model identity
is computed once and one lm-eval model wrapper (HFLM) is built once; task managers are
built once per run (``TaskSource``).

A cache key holds the model's content identity, the task's content fingerprint (its
resolved definition and the documents evaluated) and every setting that changes scores,
so a hit means the same model on the same test (``glu_prune.evaluation.identity``). lm-eval's own
response cache is never used: it is keyed by request, not by model.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from glu_prune.catalog.benchmarks import Benchmark, needs_default_tasks, uses_twins
from glu_prune.evaluation.identity import model_identity, task_fingerprint

LOG = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the cached record's layout changes (2: content keys)
PYTHON_SEED = 0  # lm-eval's defaults: random 0, numpy/torch/fewshot 1234

__all__ = ["BenchResult", "BenchmarkFailed", "EvalError", "EvalSettings", "MetricValue",
           "ResultCache", "TaskSource", "VariantEvaluation", "VariantRunner",
           "benchmark_failure", "cache_key", "evaluate_variant", "extract_metrics",
           "load_tasks", "make_lm", "model_identity", "run_lm_eval", "run_settings",
           "run_tasks", "task_fingerprint", "task_manager_for"]


class EvalError(RuntimeError):
    """lm-eval ran but its output cannot be used (missing metric, wrong few-shot...)."""


class BenchmarkFailed(EvalError):
    """One benchmark of one variant could not be evaluated; the cause is chained."""


@lru_cache(maxsize=1)
def lm_eval_version() -> str:
    """The installed lm-eval version (recorded with every result; part of the cache key)."""
    from importlib.metadata import version

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
    if not _is_number(value):
        raise ValueError(f"metrics.{key}.value: expected a number, got {value!r}")
    if se is not None and not _is_number(se):
        raise ValueError(f"metrics.{key}.stderr: expected a number or null, got {se!r}")
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


# ---------------------------------------------------------------- cache keys and the cache


def run_settings(benchmark: Benchmark, settings: EvalSettings, identity: str,
                 task_hash: str | None = None) -> dict[str, Any]:
    """The full record of how ``benchmark`` is run: the cache key's content.

    ``identity`` is the model's content identity, ``task_hash`` the task's content
    fingerprint (``glu_prune.evaluation.identity``); both are stored beside each result.
    """
    return {"task": benchmark.task, "num_fewshot": benchmark.num_fewshot,
            **settings.record(), "model_identity": identity, "task_hash": task_hash}


def cache_key(slug: str, benchmark: str, settings_record: dict[str, Any]) -> str:
    """Hex key of (variant, benchmark, settings); any change in them is a new entry."""
    blob = json.dumps({"slug": slug, "benchmark": benchmark, **settings_record}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class ResultCache:
    """On-disk cache: ``<root>/<slug>/<benchmark>.<key16>.json``, one file per result."""

    root: Path
    hits: int = 0
    misses: int = 0
    _reported: set[Path] = field(default_factory=set, repr=False)

    def path(self, slug: str, benchmark: str, key: str) -> Path:
        return Path(self.root) / slug / f"{benchmark}.{key[:16]}.json"

    def get(self, slug: str, benchmark: str, key: str,
            metrics: Sequence[str] = ()) -> BenchResult | None:
        """The cached result, or None. An entry that cannot be read as this benchmark's
        result (truncated, garbage, a wrong layout, a missing one of ``metrics``) is
        logged once and treated as absent, so it is recomputed and overwritten."""
        path = self.path(slug, benchmark, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            result = BenchResult.from_json(json.loads(path.read_text(encoding="utf-8")),
                                           metrics)
            if (result.slug, result.benchmark) != (slug, benchmark):
                raise ValueError(f"holds {result.slug} / {result.benchmark}")
        except (OSError, ValueError) as exc:  # JSON and UTF-8 errors are ValueErrors
            self._report(path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return result

    def _report(self, path: Path, exc: Exception) -> None:
        if path not in self._reported:
            self._reported.add(path)
            LOG.warning("ignoring unreadable cache entry %s (%s); it will be recomputed",
                        path, exc)

    def put(self, result: BenchResult, key: str) -> Path:
        path = self.path(result.slug, result.benchmark, key)
        atomic_write_text(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        return path


# ---------------------------------------------------------------- running lm-eval


@contextlib.contextmanager
def _serial_bootstrap() -> Iterator[None]:
    """lm-eval bootstraps stderrs in a process pool; forking a torch process in pytest is
    slow and can hang, so bootstrap in-process for the duration of the call."""
    old = os.environ.get("DISABLE_MULTIPROC")
    os.environ["DISABLE_MULTIPROC"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DISABLE_MULTIPROC", None)
        else:
            os.environ["DISABLE_MULTIPROC"] = old


SMALL_MODEL_PARAMS = 50_000_000  # below this, CPU ops are too small to split over threads


@contextlib.contextmanager
def _cpu_threads_for(model: Any) -> Iterator[None]:
    """One torch thread for a small model on CPU, restored afterwards.

    The tiny model's ops take microseconds; splitting them over threads costs more in
    synchronization than it saves, and on a shared 2-core runner the spin-waits made
    decoding 15x slower (measured: 10 tokens at batch 16, 10 s with 2 threads, 0.6 s with 1).
    """
    import torch

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
    if getattr(model, "device", None) is None or model.device.type != "cpu" or not small:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def task_manager_for(benchmarks: Sequence[Benchmark]):
    """A new TaskManager that knows the tasks of ``benchmarks`` (lm-eval's own index only
    when needed: indexing it takes ~10 s). ``TaskSource`` keeps them for a whole run."""
    from lm_eval.tasks import TaskManager

    from glu_prune import tiny

    include = [str(tiny.TASKS_DIR)] if uses_twins(benchmarks) else None
    return TaskManager(include_path=include, include_defaults=needs_default_tasks(benchmarks))


def load_tasks(task_manager: Any, benchmarks: Sequence[Benchmark]) -> list[Any]:
    """Task/Group objects for ``benchmarks``, each leaf set to its benchmark's few-shot.

    ``simple_evaluate`` takes one ``num_fewshot`` for all tasks; the suite needs mmlu and
    gsm8k at 5 and the rest at 0, so few-shot is set per task here.
    """
    objects = []
    for b in benchmarks:
        loaded = task_manager.load([b.task])
        if not loaded["tasks"]:
            raise EvalError(f"lm-eval task {b.task!r} (benchmark {b.name}) loaded no tasks")
        for task in loaded["tasks"].values():
            task.set_config(key="num_fewshot", value=b.num_fewshot)
        top = loaded["groups"].get(b.task) or loaded["tasks"].get(b.task)
        objects.extend([top] if top is not None else loaded["tasks"].values())
    return objects


def make_lm(model: Any, tokenizer: Any, settings: EvalSettings) -> Any:
    """lm-eval's wrapper (HFLM) of the in-memory model, built once per variant.

    It gets a copy of the tokenizer: HFLM sets a missing pad token in place, which would
    change the tokenizer's identity for the next variant sharing it.
    """
    from lm_eval.models.huggingface import HFLM

    if tokenizer is None:
        raise EvalError("lm-eval needs the model's tokenizer, and none was loaded")
    return HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer),
                batch_size=settings.batch_size, max_length=settings.max_length)


def run_tasks(lm: Any, task_manager: Any, objects: Sequence[Any],
              settings: EvalSettings) -> dict[str, Any]:
    """lm-eval's ``evaluate`` over loaded task objects on the wrapped model; raw results.

    Seeded as ``simple_evaluate`` seeds, which is not called because it also collects
    environment info on every call (torch's collect_env runs pip and other subprocesses:
    0.5 s a call here, measured), a cost one call per benchmark would pay 13 times a
    variant. Reseeding per call also makes a benchmark's result independent of which
    other benchmarks ran before it, as a cached result must be.
    """
    import random

    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate

    task_dict = task_manager.load(list(objects))
    for task in task_dict["tasks"].values():
        task.set_fewshot_seed(seed=settings.seed)
    random.seed(PYTHON_SEED)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    with _serial_bootstrap(), _cpu_threads_for(lm.model):
        raw = evaluate(
            lm=lm, task_dict=task_dict, limit=settings.limit,
            cache_requests=False,  # never share requests or responses between variants
            bootstrap_iters=settings.bootstrap_iters, log_samples=False,
            apply_chat_template=settings.chat_template,
            fewshot_as_multiturn=settings.chat_template)
    if raw is None:
        raise EvalError("lm-eval returned no results (not rank 0?)")
    return raw


def run_lm_eval(model: Any, tokenizer: Any, benchmarks: Sequence[Benchmark],
                settings: EvalSettings) -> dict[str, Any]:
    """One lm-eval call over all ``benchmarks`` together (no cache); raw results.

    The suite evaluates one benchmark at a time (``VariantRunner``); this combined call is
    kept as the reference that ``benchmarks/eval_overhead.py`` measures it against.
    """
    tm = task_manager_for(benchmarks)
    return run_tasks(make_lm(model, tokenizer, settings), tm, load_tasks(tm, benchmarks),
                     settings)


def _leaf_tasks(raw: dict[str, Any], name: str) -> list[str]:
    """Leaf task names under ``name`` (itself when it is a task)."""
    children = raw.get("group_subtasks", {}).get(name)
    if not children:
        return [name]
    return [leaf for child in children for leaf in _leaf_tasks(raw, child)]


def _stderr(value: Any) -> float | None:
    try:
        se = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" where it has no stderr
    return se if math.isfinite(se) else None


def extract_metrics(raw: dict[str, Any], benchmark: Benchmark) -> dict[str, MetricValue]:
    """The judged metrics of ``benchmark`` from lm-eval's raw results.

    Non-finite values are kept (the comparison fails on them with a clear message); a
    missing metric is an error naming what lm-eval did report.
    """
    row = raw.get("results", {}).get(benchmark.task)
    if row is None:
        raise EvalError(f"lm-eval reported nothing for task {benchmark.task!r} "
                        f"(benchmark {benchmark.name}); reported: "
                        f"{', '.join(raw.get('results', {}))}")
    leaves = _leaf_tasks(raw, benchmark.task)
    counts = [raw.get("n-samples", {}).get(t, {}).get("effective") for t in leaves]
    n = sum(counts) if counts and all(isinstance(c, int) for c in counts) else None
    out = {}
    for m in benchmark.metrics:
        if m.key not in row:
            have = sorted(k for k in row if "," in k and "_stderr" not in k)
            raise EvalError(f"lm-eval task {benchmark.task!r} did not report {m.key!r}; it "
                            f"reported: {', '.join(have)}")
        out[m.key] = MetricValue(float(row[m.key]), _stderr(row.get(m.stderr_key)), n)
    return out


def _check_fewshot(raw: dict[str, Any], benchmark: Benchmark) -> None:
    shots = raw.get("n-shot", {})
    for leaf in _leaf_tasks(raw, benchmark.task):
        got = shots.get(leaf)
        if got is not None and int(got) != benchmark.num_fewshot:
            raise EvalError(f"{leaf} ran {got}-shot, but benchmark {benchmark.name} is "
                            f"{benchmark.num_fewshot}-shot")


# ---------------------------------------------------------------- tasks, once per run


class TaskSource:
    """Benchmarks' lm-eval tasks for a whole run: one TaskManager per kind of task folder
    (twins, lm-eval's own), and each task's content fingerprint computed once.

    ``manager``: use this TaskManager for every benchmark (tests, custom task folders).
    """

    def __init__(self, manager: Any = None) -> None:
        self._fixed = manager
        self._managers: dict[tuple[bool, bool], Any] = {}
        self._hashes: dict[tuple, str] = {}
        self._fresh: tuple[tuple, list[Any]] | None = None  # loaded for a fingerprint

    def manager(self, benchmark: Benchmark) -> Any:
        """The run's TaskManager that knows ``benchmark``'s task."""
        if self._fixed is not None:
            return self._fixed
        kind = (uses_twins([benchmark]), needs_default_tasks([benchmark]))
        if kind not in self._managers:
            self._managers[kind] = task_manager_for([benchmark])
        return self._managers[kind]

    def load(self, benchmark: Benchmark) -> list[Any]:
        """Fresh task objects for one run of ``benchmark`` (few-shot set)."""
        fresh, self._fresh = self._fresh, None
        if fresh is not None and fresh[0] == (benchmark.task, benchmark.num_fewshot):
            return fresh[1]
        return load_tasks(self.manager(benchmark), [benchmark])

    def fingerprint(self, benchmark: Benchmark, limit: int | None) -> str:
        """The task's content fingerprint at ``limit`` (loads the task on first use)."""
        key = (benchmark.task, benchmark.num_fewshot, limit)
        if key not in self._hashes:
            objects = load_tasks(self.manager(benchmark), [benchmark])
            self._hashes[key] = task_fingerprint(objects, limit)
            # a cache miss right after runs these; one slot, so hits hold no data sets
            self._fresh = (key[:2], objects)
        return self._hashes[key]


# ---------------------------------------------------------------- one variant


def _release_accelerator_memory() -> None:
    """After a failed benchmark (e.g. out of memory in generation), give back what the
    failed call held, so the next benchmark of the variant starts clean."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class VariantRunner:
    """Evaluates one variant one benchmark at a time: cache hit, or one lm-eval call whose
    result is cached as soon as it returns. The model identity is computed once and the
    HFLM wrapper built once (on the first miss); a failing benchmark raises on its own."""

    def __init__(self, model: Any, tokenizer: Any, slug: str, settings: EvalSettings,
                 cache: ResultCache | None = None, tasks: TaskSource | None = None,
                 progress: Callable[[str], None] | None = None,
                 identity: str | None = None) -> None:
        self.model, self.tokenizer, self.slug = model, tokenizer, slug
        self.settings, self.cache = settings, cache
        self.tasks = tasks or TaskSource()
        self.say = progress or LOG.info
        self._identity = identity
        self._lm: Any = None
        self.evaluated: list[str] = []  # benchmarks that cost model time

    @property
    def identity(self) -> str:
        """The model's content identity (computed on first use, once)."""
        if self._identity is None:
            self._identity = model_identity(self.model, self.tokenizer)
        return self._identity

    def key(self, benchmark: Benchmark) -> tuple[dict[str, Any], str]:
        """(settings record, cache key) of ``benchmark`` on this variant."""
        task_hash = self.tasks.fingerprint(benchmark, self.settings.limit)
        record = run_settings(benchmark, self.settings, self.identity, task_hash)
        return record, cache_key(self.slug, benchmark.name, record)

    def run(self, benchmark: Benchmark) -> BenchResult:
        """``benchmark``'s result from the cache or from one lm-eval call (then cached)."""
        record, key = self.key(benchmark)
        wanted = [m.key for m in benchmark.metrics]
        hit = self.cache.get(self.slug, benchmark.name, key, wanted) if self.cache else None
        if hit is not None:
            self.say(f"{self.slug}: {benchmark.name}: from the result cache")
            return hit
        self.say(f"{self.slug}: lm-eval on {benchmark.name}"
                 + (f" (limit {self.settings.limit})" if self.settings.limit else ""))
        try:
            result = self._evaluate(benchmark, record)
        except Exception as exc:
            traceback.clear_frames(exc.__traceback__)  # its frames hold the call's tensors
            _release_accelerator_memory()
            raise
        if self.cache is not None and all(v.finite for v in result.metrics.values()):
            self.cache.put(result, key)  # non-finite results are not cached: a fix must rerun
        self.evaluated.append(benchmark.name)
        self.say(f"{self.slug}: {benchmark.name}: " + ", ".join(
            f"{k}={v.value:.4g}" for k, v in result.metrics.items()))
        return result

    def _evaluate(self, benchmark: Benchmark, record: dict[str, Any]) -> BenchResult:
        if self._lm is None:
            self._lm = make_lm(self.model, self.tokenizer, self.settings)
        raw = run_tasks(self._lm, self.tasks.manager(benchmark), self.tasks.load(benchmark),
                        self.settings)
        _check_fewshot(raw, benchmark)
        return BenchResult(self.slug, benchmark.name, benchmark.task,
                           extract_metrics(raw, benchmark), record)


@dataclass
class VariantEvaluation:
    """Results of one variant: per benchmark a result or the error that stopped it."""

    slug: str
    results: dict[str, BenchResult] = field(default_factory=dict)
    evaluated: list[str] = field(default_factory=list)  # benchmarks that cost model time
    errors: dict[str, Exception] = field(default_factory=dict)

    def result(self, benchmark: str) -> BenchResult:
        """The result of ``benchmark``; ``BenchmarkFailed`` (cause chained) if it failed."""
        if benchmark in self.errors:
            raise benchmark_failure(self.slug, benchmark, self.errors[benchmark])
        try:
            return self.results[benchmark]
        except KeyError:
            raise KeyError(f"{self.slug}: {benchmark!r} was not evaluated; evaluated: "
                           f"{', '.join([*self.results, *self.errors]) or 'none'}") from None


def benchmark_failure(slug: str, benchmark: str, exc: BaseException) -> BenchmarkFailed:
    """The error a benchmark's tests fail with: its own cause, named and chained."""
    err = BenchmarkFailed(f"{slug} / {benchmark}: evaluation failed: "
                          f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def evaluate_variant(model: Any, tokenizer: Any, slug: str, benchmarks: Sequence[Benchmark],
                     settings: EvalSettings, cache: ResultCache | None = None,
                     progress: Callable[[str], None] | None = None, *,
                     tasks: TaskSource | None = None,
                     identity: str | None = None) -> VariantEvaluation:
    """Results of every benchmark in ``benchmarks`` for one variant, one at a time.

    Each is read from the cache or evaluated in its own lm-eval call and cached when it
    finishes. A benchmark that fails is recorded in ``errors`` (``result()`` raises it)
    and the others still run. ``tasks`` shares task managers and fingerprints between
    variants; ``identity`` skips recomputing a known model identity.
    """
    runner = VariantRunner(model, tokenizer, slug, settings, cache, tasks, progress, identity)
    out = VariantEvaluation(slug)
    for b in benchmarks:
        try:
            out.results[b.name] = runner.run(b)
        except Exception as exc:  # one benchmark's failure is its own (KeyboardInterrupt is not)
            LOG.error("%s / %s: evaluation failed: %s: %s", slug, b.name,
                      type(exc).__name__, exc)
            out.errors[b.name] = exc
    out.evaluated = runner.evaluated
    return out
