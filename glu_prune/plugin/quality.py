"""pytest-facing glue of the accuracy/perplexity suite: the evaluation session
(settings, cache, the run's tasks, the current variant's runner), the
per-variant benchmark parameters and the evaluation options.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from glu_prune.catalog.benchmarks import BENCHMARK_SETS, Benchmark, benchmarks_for
from glu_prune.console import progress_line, quiet_libraries
from glu_prune.evaluation.harness import (BenchResult, EvalSettings, ResultCache, TaskSource,
                                          VariantRunner, benchmark_failure)
from glu_prune.judging.quality import Tolerance, UPDATE_FLAG

LOG = logging.getLogger(__name__)


PARAM_BY_KIND = {"accuracy": "accuracy_benchmark", "perplexity": "perplexity_benchmark"}
RECORD_KEY = "glu_eval"  # name of the user_properties entries read by the results table


def _bench_params(kind: str) -> Callable[[Any, Any], list[tuple[Benchmark, str]]]:
    def params(metafunc: Any, vid: Any) -> list[tuple[Benchmark, str]]:
        return [(b, b.name) for b in benchmarks_for(vid.model) if b.metrics_of(kind)]
    return params


# argname -> fn(metafunc, variant_id): merged into pytest_plugin.PER_VARIANT_PARAMS
PER_VARIANT_PARAMS = {PARAM_BY_KIND[k]: _bench_params(k) for k in PARAM_BY_KIND}


def add_options(group: Any) -> None:
    """The evaluation options (called from the plugin's ``pytest_addoption``)."""
    group.addoption("--glu-limit", type=int, default=None,
                    help="lm-eval limit: examples per task, for quick runs; recorded and "
                         "compared with the baseline's (default: none, full test sets)")
    group.addoption("--glu-batch-size", type=int, default=EvalSettings.batch_size,
                    help=f"lm-eval batch size; changes scores slightly, so it is fixed and "
                         f"recorded (default: {EvalSettings.batch_size})")
    group.addoption("--glu-chat-template", action="store_true", default=False,
                    help="apply the tokenizer's chat template (instruct models) "
                         "(default: off, as the published runs)")
    group.addoption(UPDATE_FLAG, action="store_true", default=False,
                    help="rewrite the baseline values measured in this run and fail those "
                         "tests, so a person reviews the diff (default: off)")
    group.addoption("--glu-z", type=float, default=Tolerance.z,
                    help=f"z of the accuracy bound max(abs_floor, z*sqrt(se_b^2+se_r^2)) "
                         f"(default: {Tolerance.z})")
    group.addoption("--glu-ppl-tol", default=None,
                    help="relative perplexity tolerance: one number, or name=value pairs "
                         "like 'wikitext=0.05,lambada_openai=0.1' "
                         f"(default: {Tolerance.ppl_rel}, lambada_openai 0.1)")
    group.addoption("--glu-cache-dir", default=None,
                    help="result cache folder; runs resume from it (default: <rootdir>/.glu_cache)")
    group.addoption("--glu-baselines-dir", default=None,
                    help="folder of <model>.json baselines (default: <rootdir>/baselines)")


def parse_ppl_tol(text: str | None) -> dict[str, Any]:
    """``--glu-ppl-tol`` as Tolerance keyword arguments: one number for every perplexity
    benchmark, or ``name=value`` pairs naming registered perplexity benchmarks.

    Raises ``pytest.UsageError`` naming the option, the bad part and what is valid: a NaN
    would turn the gate off and a misspelt name would be ignored, both silently.
    """
    def number(value: str) -> float:
        try:
            tol = float(value)
        except ValueError:
            tol = math.nan
        if not (math.isfinite(tol) and tol >= 0):
            raise pytest.UsageError(f"--glu-ppl-tol={text}: {value.strip()!r} is not a "
                                    f"tolerance; valid: a finite number >= 0, e.g. 0.05")
        return tol

    if not text:
        return {}
    if "=" not in text:
        return {"ppl_rel": number(text)}
    known = sorted({b.name for s in BENCHMARK_SETS.values() for b in s if b.has_perplexity})
    pairs: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        why = (f"expected name=value, got {part.strip()!r}" if not sep
               else f"{name!r} is not a perplexity benchmark" if name not in known
               else f"{name!r} is given twice" if name in pairs else "")
        if why:
            raise pytest.UsageError(f"--glu-ppl-tol={text}: {why}; valid: one number, or "
                                    f"name=value pairs with names {', '.join(known)}")
        pairs[name] = number(value)
    return {"ppl_rel_by_benchmark": {**Tolerance().ppl_rel_by_benchmark, **pairs}}


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

    @classmethod
    def from_config(cls, config: pytest.Config) -> EvalSession:
        root = Path(config.rootpath)
        opt = config.getoption
        try:
            settings = EvalSettings(batch_size=opt("--glu-batch-size"), limit=opt("--glu-limit"),
                                    chat_template=opt("--glu-chat-template"))
            tolerance = Tolerance(z=opt("--glu-z"), **parse_ppl_tol(opt("--glu-ppl-tol")))
        except ValueError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None
        cache_dir = Path(opt("--glu-cache-dir") or root / ".glu_cache") / "eval"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        uncaptured = (capman.global_and_fixture_disabled if capman is not None
                      and reporter is not None else contextlib.nullcontext)
        # progress reaches the console as one line per benchmark (console.progress_line);
        # say() only logs
        return cls(settings, tolerance, ResultCache(cache_dir),
                   Path(opt("--glu-baselines-dir") or root / "baselines"),
                   bool(opt(UPDATE_FLAG)), LOG.info, uncaptured,
                   verbose=opt("verbose") > 0,
                   newline=reporter.ensure_newline if reporter is not None else _no_newline)

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


SESSION_KEY = pytest.StashKey[EvalSession]()


def session_of(config: pytest.Config) -> EvalSession:
    if SESSION_KEY not in config.stash:
        config.stash[SESSION_KEY] = EvalSession.from_config(config)
    return config.stash[SESSION_KEY]


def _eval_params(item: pytest.Item) -> tuple[Any, Benchmark | None]:
    """(variant id, benchmark) of an accuracy/perplexity test; benchmark None otherwise."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    bench = next((params[p] for p in PARAM_BY_KIND.values() if p in params), None)
    return params.get("variant_id"), bench


def last_evaluation_of_variant(item: pytest.Item) -> bool:
    """Whether no later test of this session evaluates ``item``'s variant (its tests run
    together, so its runner can be released when this one ends)."""
    items = item.session.items
    vid = _eval_params(item)[0]
    try:
        later = items[items.index(item) + 1:]
    except ValueError:  # not a collected item (run by hand): keep nothing resident
        return True
    return not any(_eval_params(i)[1] is not None and _eval_params(i)[0] == vid
                   for i in later)
