"""pytest-facing glue of the accuracy/perplexity suite (wired in by ``pytest_plugin``).

Each test evaluates its own benchmark (from the result cache, or in one lm-eval call that
is cached as soon as it returns) and judges it against the baseline file; a benchmark
that fails fails only its own tests. Per variant the model identity and the lm-eval
wrapper are made once, and released after the variant's last evaluation test, so one
variant stays resident. Light on import: no torch or lm-eval until a test runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from glu_prune.baselines import (UPDATE_FLAG, BaselineError, BaselineFile, Tolerance,
                                 baseline_path, compare_metric, load_baseline, mismatch_help,
                                 settings_mismatch, update_baseline)
from glu_prune.benchmarks import BENCHMARK_SETS, Benchmark, benchmarks_for
from glu_prune.console import progress_line, quiet_libraries
from glu_prune.evaluate import (BenchResult, EvalSettings, ResultCache, TaskSource,
                                VariantRunner, benchmark_failure, run_settings)

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


@dataclass
class Judge:
    """The fixture object: ``check(variant, benchmark, kind)`` measures and judges one test."""

    session: EvalSession
    request: pytest.FixtureRequest

    def _baseline(self, model: str) -> BaselineFile:
        known = {b.name: b for b in benchmarks_for(model)}
        return load_baseline(baseline_path(self.session.baselines_dir, model), known)

    def precheck(self, vid: Any, benchmark: Benchmark) -> None:
        """Skip before building the model when the baseline has nothing for this test."""
        if self.session.update:
            return
        try:
            bf = self._baseline(vid.model)
        except BaselineError:
            return  # reported as a failure by check(), not as a setup error
        if _lookup(bf, vid.slug, vid.pct, benchmark.name) is None:
            pytest.skip(_no_baseline(bf, vid.slug, benchmark.name))

    def check(self, variant: Any, benchmark: Benchmark, kind: str) -> None:
        """Evaluate this benchmark (once per session), then compare ``kind`` metrics with
        the baseline."""
        model, slug, s = variant.spec.name, variant.slug, self.session
        metrics = benchmark.metrics_of(kind)
        bf = None
        if not s.update:
            try:
                bf = self._baseline(model)
            except BaselineError as exc:
                pytest.fail(str(exc), pytrace=False)
            diffs = settings_mismatch(bf, benchmark.name,
                                      run_settings(benchmark, s.settings, ""))
            if diffs and bf.settings(benchmark.name) is not None:
                pytest.fail(f"{model} / {slug} / {benchmark.name}: {mismatch_help(diffs)}",
                            pytrace=False)
        result = s.result(variant, benchmark)
        measured = {m.key: result.metrics[m.key] for m in metrics}
        if s.update:
            for key, mv in measured.items():
                self._record(model, slug, benchmark, key, mv, result, outcome="pinned")
            self._update(variant, benchmark, measured, result.settings)
        self._judge(bf, variant, benchmark, measured, result)

    def _update(self, variant: Any, benchmark: Benchmark, measured: dict,
                settings: dict) -> None:
        model, slug = variant.spec.name, variant.slug
        known = {b.name: b for b in benchmarks_for(model)}
        info = {k: settings[k] for k in ("batch_size", "lm_eval_version", "seed", "max_length")}
        info.update(device=str(variant.model.device.type),
                    dtype=str(variant.model.dtype).replace("torch.", ""))
        try:
            res = update_baseline(baseline_path(self.session.baselines_dir, model), model, slug,
                                  benchmark.name, measured, settings, known,
                                  {"source": "pinned from glu-prune runs (pytest "
                                             f"{UPDATE_FLAG})"}, info)
        except BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)
        pytest.fail(res.message(slug, benchmark.name), pytrace=False)

    def _judge(self, bf: BaselineFile, variant: Any, benchmark: Benchmark, measured: dict,
               result: Any) -> None:
        model, slug = variant.spec.name, variant.slug
        found = _lookup(bf, slug, variant.pct, benchmark.name)
        if found is None:
            pytest.skip(_no_baseline(bf, slug, benchmark.name))
        base_slug, base = found
        diffs = settings_mismatch(bf, benchmark.name, result.settings, base, measured, base_slug)
        if diffs:  # e.g. another data set: a comparison would measure nothing
            pytest.fail(f"{model} / {slug} / {benchmark.name}: {mismatch_help(diffs)}",
                        pytrace=False)
        failures, missing = [], []
        for key, run in measured.items():
            if key not in base:
                missing.append(key)
                self._record(model, slug, benchmark, key, run, result, outcome="no baseline")
                continue
            try:
                c = compare_metric(model, slug, benchmark.name, benchmark.metric(key),
                                   base[key], run, self.session.tolerance, str(bf.path))
            except BaselineError as exc:
                failures.append(str(exc))
                continue
            self._record(model, slug, benchmark, key, run, result, c.record())
            if c.regressed:
                failures.append(c.message())
            elif c.outcome == "improved":
                LOG.info("%s", c.message())
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)
        if len(missing) == len(measured):
            pytest.skip(_no_baseline(bf, slug, benchmark.name, missing))

    def _record(self, model: str, slug: str, benchmark: Benchmark, key: str, run: Any,
                result: Any, judged: dict[str, Any] | None = None, outcome: str = "") -> None:
        """One results-table row (travels to the xdist controller in user_properties)."""
        metric = benchmark.metric(key)
        record = judged or {"model": model, "variant": slug, "benchmark": benchmark.name,
                            "metric": key, "kind": metric.kind, "direction": metric.direction,
                            "measured": run.value, "measured_stderr": run.stderr, "n": run.n,
                            "outcome": outcome}
        record.update(group=benchmark.group, cached=result.cached,
                      limit=result.settings.get("limit"),
                      chat_template=result.settings.get("chat_template"),
                      batch_size=result.settings.get("batch_size"))
        self.request.node.user_properties.append((RECORD_KEY, record))


def _lookup(bf: BaselineFile, slug: str, pct: float,
            benchmark: str) -> tuple[str, dict] | None:
    """(slug of the entry, baseline entry); level 0 is the same model under every method,
    so any p0 entry of the model serves."""
    entry = bf.entry(slug, benchmark)
    if entry is not None:
        return slug, entry
    if pct == 0:
        for other in bf.slugs():
            same_model_p0 = (other.startswith(f"{bf.model}-")
                             and other.rsplit("-", 1)[-1] == "p0")
            if same_model_p0 and (entry := bf.entry(other, benchmark)) is not None:
                return other, entry
    return None


def _no_baseline(bf: BaselineFile, slug: str, benchmark: str,
                 metrics: list[str] | None = None) -> str:
    what = f"{benchmark} {', '.join(metrics)}" if metrics else benchmark
    why = bf.why_absent(benchmark, metrics)
    return (f"no baseline for {slug} / {what} in {bf.path} ({why}); pin one with "
            f"{UPDATE_FLAG} and review the diff")


def judge_for(request: pytest.FixtureRequest) -> Judge:
    """Build the ``glu_eval`` fixture value; skips early when the baseline has no entry.
    After the variant's last evaluation test the session releases its runner."""
    session = session_of(request.config)
    judge = Judge(session, request)
    vid, bench = _eval_params(request.node)
    if vid is not None and bench is not None:
        def release_after_last() -> None:
            if last_evaluation_of_variant(request.node):
                session.release()
        request.addfinalizer(release_after_last)
        judge.precheck(vid, bench)
    return judge
