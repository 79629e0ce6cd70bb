"""The glu_eval fixture's object: evaluate one benchmark of a variant (once per
session), judge it against the baseline file and record it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from glu_prune.catalog.benchmarks import Benchmark, benchmarks_for
from glu_prune.evaluation.harness import run_settings
from glu_prune.judging.quality import (BaselineError, BaselineFile, UPDATE_FLAG, baseline_path,
                                       compare_metric, load_baseline, mismatch_help,
                                       settings_mismatch, update_baseline)
from glu_prune.plugin.quality import (EvalSession, RECORD_KEY, _eval_params,
                                      last_evaluation_of_variant, session_of)

LOG = logging.getLogger(__name__)


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
