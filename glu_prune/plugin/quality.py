"""pytest-facing glue of the accuracy/perplexity suite: the evaluation session
(settings, cache, the run's tasks, the current variant's runner) and the per-variant
benchmark parameters. Its options are read by ``glu_prune.plugin.options``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from glu_prune.catalog.benchmarks import Benchmark, benchmarks_for
from glu_prune.console import progress_line, quiet_libraries
from glu_prune.evaluation import (BenchResult, EvalSettings, ResultCache, TaskSource,
                                  VariantRunner, benchmark_failure)
from glu_prune.judging import Tolerance
from glu_prune.plugin.options import Options

LOG = logging.getLogger(__name__)


PARAM_BY_KIND = {"accuracy": "accuracy_benchmark", "perplexity": "perplexity_benchmark"}


def _bench_params(kind: str) -> Callable[[Any, Any], list[tuple[Benchmark, str]]]:
    def params(metafunc: Any, vid: Any) -> list[tuple[Benchmark, str]]:
        return [(b, b.name) for b in benchmarks_for(vid.model) if b.metrics_of(kind)]
    return params


# argname -> fn(metafunc, variant_id): the per-variant axes of the suite's parametrization
PER_VARIANT_PARAMS = {PARAM_BY_KIND[k]: _bench_params(k) for k in PARAM_BY_KIND}


def _no_newline() -> None:
    """No terminal (an xdist worker): nothing to end."""


@dataclass
class EvalSession:
    """Session state (kept in ``config.stash``): settings, cache, the run's tasks, and the
    current variant's runner and per-benchmark outcomes (a result or the error)."""

    settings: EvalSettings
    tolerance: Tolerance
    cache: ResultCache | None
    baselines_dir: Path
    update: bool
    say: Callable[[str], None] = LOG.info
    uncaptured: Callable[[], Any] = contextlib.nullcontext  # lm-eval's bars reach the terminal
    tasks: TaskSource = field(default_factory=TaskSource)  # task managers: one per run
    runner: VariantRunner | None = None
    outcomes: dict[str, BenchResult | Exception] = field(default_factory=dict)
    verbose: bool = False  # pytest -v: lm-eval's own bars and INFO logs
    newline: Callable[[], None] = _no_newline  # ends pytest's line of dots first
    require_baselines: bool = False  # no baseline: a failure, not a skip

    @classmethod
    def from_options(cls, opts: Options, say: Callable[[str], None] = LOG.info,
                     uncaptured: Callable[[], Any] = contextlib.nullcontext, *,
                     newline: Callable[[], None] = _no_newline) -> EvalSession:
        """The session of a run with options ``opts``; ``say`` logs, ``uncaptured`` lets
        lm-eval's bars reach the terminal, ``newline`` ends pytest's line of dots."""
        try:
            settings = EvalSettings(batch_size=opts.batch_size, limit=opts.limit,
                                    chat_template=opts.chat_template)
        except ValueError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
        # progress reaches the console as one line per benchmark (console.progress_line)
        return cls(settings, opts.tolerance, ResultCache(opts.cache_dir / "eval"),
                   opts.baselines_dir, opts.update_baselines, say, uncaptured,
                   verbose=opts.verbose > 0, newline=newline,
                   require_baselines=opts.require_baselines)

    def result(self, variant: Any, benchmark: Benchmark) -> BenchResult:
        """``benchmark``'s result on ``variant``, evaluated at most once per session; if it
        failed, ``BenchmarkFailed`` naming its own cause (the variant's other benchmarks
        are unaffected)."""
        runner = self._runner_for(variant)
        got = self.outcomes.get(benchmark.name)
        if got is None:
            try:
                self.newline()
                with self.uncaptured(), quiet_libraries(self.verbose), \
                        progress_line(variant.slug, benchmark.name) as line:
                    got = runner.run(benchmark)
                    line.finish("from the result cache" if got.cached else ", ".join(
                        f"{k}={v.value:.4g}" for k, v in got.metrics.items()))
            except Exception as exc:  # this benchmark's tests fail; the others still run
                got = exc
            self.outcomes[benchmark.name] = got
        if isinstance(got, Exception):
            raise benchmark_failure(variant.slug, benchmark.name, got)
        return got

    def _runner_for(self, variant: Any) -> VariantRunner:
        """The variant's runner: identity and HFLM made once per variant, not per test."""
        if self.runner is None or self.runner.model is not variant.model \
                or self.runner.slug != variant.slug:
            self.release()
            self.runner = VariantRunner(variant.model, variant.tokenizer, variant.slug,
                                        self.settings, self.cache, self.tasks, self.say)
        return self.runner

    def release(self) -> None:
        """Drop the current variant's runner and outcomes (they hold its model and, for
        failures, tracebacks), so the next variant is built with one variant resident."""
        self.runner = None
        self.outcomes = {}


def eval_params(item: pytest.Item) -> tuple[Any, Benchmark | None]:
    """(variant id, benchmark) of an accuracy/perplexity test; benchmark None otherwise."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    bench = next((params[p] for p in PARAM_BY_KIND.values() if p in params), None)
    return params.get("variant_id"), bench


def last_evaluation_of_variant(item: pytest.Item) -> bool:
    """Whether no later test of this session evaluates ``item``'s variant (its tests run
    together, so its runner can be released when this one ends)."""
    items = item.session.items
    vid = eval_params(item)[0]
    try:
        later = items[items.index(item) + 1:]
    except ValueError:  # not a collected item (run by hand): keep nothing resident
        return True
    return not any(eval_params(i)[1] is not None and eval_params(i)[0] == vid
                   for i in later)
