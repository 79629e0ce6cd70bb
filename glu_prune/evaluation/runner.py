"""One variant, one benchmark at a time: a cache hit, or one lm-eval call whose result
is cached as soon as it returns; a failing benchmark fails on its own.

Per variant the model identity is computed once and one lm-eval model wrapper (HFLM) is
built once. ``make_lm``, ``run_tasks`` and ``model_identity`` are looked up in this
module's globals at call time, so tests replace them here.
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from glu_prune.catalog.benchmarks import Benchmark
from glu_prune.evaluation.cache import ResultCache
from glu_prune.evaluation.harness import (EvalError, TaskSource, check_fewshot, extract_metrics,
                                          make_lm, run_tasks)
from glu_prune.evaluation.identity import model_identity
from glu_prune.evaluation.settings import BenchResult, EvalSettings, cache_key, run_settings

LOG = logging.getLogger(__name__)

__all__ = ["BenchmarkFailed", "VariantEvaluation", "VariantRunner", "benchmark_failure",
           "evaluate_variant"]


class BenchmarkFailed(EvalError):
    """One benchmark of one variant could not be evaluated; the cause is chained."""


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
        check_fewshot(raw, benchmark)
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
