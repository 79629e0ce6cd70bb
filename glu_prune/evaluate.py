"""lm-eval on an in-memory (pruned) model, with an on-disk result cache so runs resume.

One ``simple_evaluate`` call per variant covers every benchmark selected for it; each
benchmark's result is cached under a key of variant slug, task and every setting that
changes scores, so an interrupted run resumes and an unchanged rerun costs no model time.
lm-eval's own response cache is never used: it is keyed by request, not by model, so
sharing it between variants would hand one variant another's answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from glu_prune.benchmarks import Benchmark, needs_default_tasks, uses_twins

LOG = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached record's layout changes
PYTHON_SEED = 0  # lm-eval's defaults: random 0, numpy/torch/fewshot 1234


class EvalError(RuntimeError):
    """lm-eval ran but its output cannot be used (missing metric, wrong few-shot...)."""


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


@dataclass
class BenchResult:
    """One benchmark's measured metrics for one variant, with the settings it ran under."""

    slug: str
    benchmark: str
    task: str
    metrics: dict[str, MetricValue]
    settings: dict[str, Any]  # task, num_fewshot, limit, chat_template, batch size, ...
    cached: bool = False  # came from the on-disk cache (no model time spent)

    def to_json(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "slug": self.slug, "benchmark": self.benchmark,
                "task": self.task, "settings": self.settings,
                "metrics": {k: asdict(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"cache format {data.get('format')!r}, expected {CACHE_FORMAT}")
        metrics = {k: MetricValue(float(v["value"]), v["stderr"], v["n"])
                   for k, v in data["metrics"].items()}
        return cls(data["slug"], data["benchmark"], data["task"], metrics, data["settings"],
                   cached=True)


# ---------------------------------------------------------------- identity and cache keys


def model_identity(model: Any, tokenizer: Any) -> str:
    """A content fingerprint of the model as evaluated (config, weights, tokenizer).

    Weights enter through per-tensor L1 and L2 norms accumulated in float64: a retrained
    or differently pruned model changes them, and summing all weights costs well under a
    second even for 3B parameters. The base model's hub id or path is not enough: a
    retrained tiny model keeps its path.
    """
    import torch

    h = hashlib.sha256()
    h.update(model.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            l1 = torch.linalg.vector_norm(t, ord=1, dtype=torch.float64).item()
            l2 = torch.linalg.vector_norm(t, ord=2, dtype=torch.float64).item()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{l1:.9e}:{l2:.9e};".encode())
    if tokenizer is not None:
        vocab = sorted(tokenizer.get_vocab().items())
        h.update(json.dumps([vocab, getattr(tokenizer, "chat_template", None),
                             tokenizer.bos_token, tokenizer.eos_token]).encode())
    return h.hexdigest()[:20]


def run_settings(benchmark: Benchmark, settings: EvalSettings, identity: str) -> dict[str, Any]:
    """The full record of how ``benchmark`` is run: the cache key's content."""
    return {"task": benchmark.task, "num_fewshot": benchmark.num_fewshot,
            **settings.record(), "model_identity": identity}


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

    def path(self, slug: str, benchmark: str, key: str) -> Path:
        return Path(self.root) / slug / f"{benchmark}.{key[:16]}.json"

    def get(self, slug: str, benchmark: str, key: str) -> BenchResult | None:
        """The cached result, or None (a corrupt entry is logged and recomputed)."""
        path = self.path(slug, benchmark, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            result = BenchResult.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            LOG.warning("ignoring unreadable cache entry %s (%s); it will be recomputed",
                        path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return result

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
    """A TaskManager that knows the tasks of ``benchmarks`` (lm-eval's own index only when
    needed: indexing it takes ~10 s)."""
    from lm_eval.tasks import TaskManager

    from glu_prune import tiny

    include = [str(tiny.TASKS_DIR)] if uses_twins(benchmarks) else None
    return TaskManager(include_path=include, include_defaults=needs_default_tasks(benchmarks))


def load_tasks(task_manager: Any, benchmarks: Sequence[Benchmark]) -> list[Any]:
    """Task/Group objects for ``benchmarks``, each leaf set to its benchmark's few-shot.

    ``simple_evaluate`` takes one ``num_fewshot`` for all tasks; the suite needs mmlu and
    gsm8k at 5 and the rest at 0 in one call, so few-shot is set per task here.
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


def run_lm_eval(model: Any, tokenizer: Any, benchmarks: Sequence[Benchmark],
                settings: EvalSettings) -> dict[str, Any]:
    """One ``simple_evaluate`` over all ``benchmarks`` on the in-memory model; raw results."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if tokenizer is None:
        raise EvalError("lm-eval needs the model's tokenizer, and none was loaded")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size,
              max_length=settings.max_length)
    tm = task_manager_for(benchmarks)
    with _serial_bootstrap(), _cpu_threads_for(model):
        raw = simple_evaluate(
            model=lm, tasks=load_tasks(tm, benchmarks), task_manager=tm,
            batch_size=settings.batch_size, limit=settings.limit,
            use_cache=None, cache_requests=False,  # never share responses between variants
            apply_chat_template=settings.chat_template,
            fewshot_as_multiturn=settings.chat_template,
            bootstrap_iters=settings.bootstrap_iters, log_samples=False,
            random_seed=PYTHON_SEED, numpy_random_seed=settings.seed,
            torch_random_seed=settings.seed, fewshot_random_seed=settings.seed)
    if raw is None:
        raise EvalError("lm-eval returned no results (not rank 0?)")
    return raw


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


# ---------------------------------------------------------------- the variant evaluation


@dataclass
class VariantEvaluation:
    """Results of one variant (from cache or a fresh lm-eval call)."""

    slug: str
    results: dict[str, BenchResult] = field(default_factory=dict)
    evaluated: list[str] = field(default_factory=list)  # benchmarks that cost model time


def evaluate_variant(model: Any, tokenizer: Any, slug: str, benchmarks: Sequence[Benchmark],
                     settings: EvalSettings, cache: ResultCache | None = None,
                     progress: Callable[[str], None] | None = None) -> VariantEvaluation:
    """Results of every benchmark in ``benchmarks`` for one variant.

    Cached results are reused; the rest run in one lm-eval call, and each result with
    finite values is written to the cache as soon as the call returns.
    """
    say = progress or LOG.info
    identity = model_identity(model, tokenizer)
    out = VariantEvaluation(slug)
    missing: list[tuple[Benchmark, dict[str, Any], str]] = []
    for b in benchmarks:
        record = run_settings(b, settings, identity)
        key = cache_key(slug, b.name, record)
        hit = cache.get(slug, b.name, key) if cache is not None else None
        if hit is not None:
            out.results[b.name] = hit
        else:
            missing.append((b, record, key))
    if not missing:
        say(f"{slug}: all {len(benchmarks)} benchmarks from the result cache")
        return out
    names = ", ".join(b.name for b, _, _ in missing)
    say(f"{slug}: lm-eval on {len(missing)} benchmark(s): {names}"
        + (f" (limit {settings.limit})" if settings.limit else ""))
    raw = run_lm_eval(model, tokenizer, [b for b, _, _ in missing], settings)
    for b, record, key in missing:
        _check_fewshot(raw, b)
        result = BenchResult(slug, b.name, b.task, extract_metrics(raw, b), record)
        if cache is not None and all(v.finite for v in result.metrics.values()):
            cache.put(result, key)  # non-finite results are not cached: a fix must rerun
        out.results[b.name] = result
        out.evaluated.append(b.name)
        say(f"{slug}: {b.name}: " + ", ".join(f"{k}={v.value:.4g}"
                                               for k, v in result.metrics.items()))
    return out
