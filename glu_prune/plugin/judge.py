"""The glu_eval fixture's object: evaluate one benchmark of a variant (once per
session), judge it against the baseline file (``judging.judge``) and record it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pytest

from glu_prune.catalog.benchmarks import Benchmark, benchmarks_for
from glu_prune.catalog.models import architecture_fingerprint, get_model_spec
from glu_prune.core.variants import BuiltVariant, VariantId
from glu_prune.core.shapes import report_extra
from glu_prune.evaluation import BenchResult, run_settings
from glu_prune.judging import (UPDATE_FLAG, Check, JudgingError, QualityBaselines, Subject,
                               Verdict, judge)
from glu_prune.judging.quality_store import VERSION_KEY, baseline_path, mismatch_help
from glu_prune.judging.verdict import no_baseline_message
from glu_prune.plugin.quality import EvalSession, eval_params, last_evaluation_of_variant
from glu_prune.plugin.records import emit
from glu_prune.plugin.unmeasured import unmeasured
from glu_prune.results import Record

LOG = logging.getLogger(__name__)
PROVENANCE = {"source": f"pinned from glu-prune runs (pytest {UPDATE_FLAG})"}


@dataclass
class Judge:
    """The fixture object: ``check(variant, benchmark, kind)`` measures and judges one test."""

    session: EvalSession
    request: pytest.FixtureRequest

    def _store(self, model: str, *, required: bool = True) -> QualityBaselines:
        known = {b.name: b for b in benchmarks_for(model)}
        # a user's model starts with no file: "no baseline" (a skip), not a broken install
        required = required and get_model_spec(model).source is None
        return QualityBaselines.load(self.session.baselines_dir, model, known,
                                     required=required)

    def precheck(self, vid: VariantId, benchmark: Benchmark) -> None:
        """Skip before building the model when it has no weights (a shape-only folder) or
        the baseline has nothing for this test."""
        spec = get_model_spec(vid.model)
        if spec.shape_only:
            pytest.skip(f"{vid.slug}: {spec.source} holds config.json only (shape-only): "
                        f"{benchmark.name} needs trained weights")
        if self.session.update:
            return
        try:
            store = self._store(vid.model)
        except JudgingError:
            return  # reported as a failure by check(), not as a setup error
        if store.entry_for(vid, benchmark.name) is None:
            unmeasured(no_baseline_message(vid.slug, benchmark.name, str(store.path),
                                           store.why_absent(benchmark=benchmark.name)),
                       self.session.require_baselines)

    def check(self, variant: BuiltVariant, benchmark: Benchmark, kind: str) -> None:
        """Evaluate this benchmark (once per session), then judge its ``kind`` metrics
        against the baseline (or pin them, with the update flag)."""
        s = self.session
        store = self._for_pin(variant.spec.name) if s.update else self._loaded(variant,
                                                                               benchmark)
        result = s.result(variant, benchmark)
        # the task's version, read once from the task the fingerprint already loaded; not
        # part of the cache key, so it is attached here (compared where a file records it)
        result = replace(result, settings={**result.settings,
                                           VERSION_KEY: s.tasks.version(benchmark)})
        checks = [Check(Subject(variant.spec.name, variant.slug, benchmark.name, m.key),
                        result.metrics[m.key], m.kind, m.direction)
                  for m in benchmark.metrics_of(kind)]
        if s.update:
            self._pin(store, variant, benchmark, checks, result)
        else:
            self._judge(store, variant, benchmark, checks, result)

    def _for_pin(self, model: str) -> QualityBaselines:
        """The baselines to pin into; a bad file fails the pin itself (after evaluating)."""
        try:
            return self._store(model, required=False)
        except JudgingError:
            known = {b.name: b for b in benchmarks_for(model)}
            return QualityBaselines(baseline_path(self.session.baselines_dir, model), model,
                                    known)

    def _loaded(self, variant: BuiltVariant, benchmark: Benchmark) -> QualityBaselines:
        """The model's baselines, failing the test on a bad file or other settings."""
        try:
            store = self._store(variant.spec.name)
        except JudgingError as exc:
            pytest.fail(str(exc), pytrace=False)
        pinned = (store.data or {}).get("settings", {}).get("architecture")
        if pinned is not None and pinned != architecture_fingerprint(variant.spec):
            pytest.fail(f"{variant.spec.name}: {store.path} was pinned for another model "
                        f"under this name: {_differences(pinned, variant.spec)}; rename the "
                        f"model or re-pin with {UPDATE_FLAG}", pytrace=False)
        # the task's version is checked with the result (_judge): reading it loads the task
        diffs = store.settings_mismatch(benchmark.name,
                                        run_settings(benchmark, self.session.settings, ""))
        if diffs:
            pytest.fail(f"{variant.spec.name} / {variant.slug} / {benchmark.name}: "
                        f"{mismatch_help(diffs)}", pytrace=False)
        return store

    def _pin(self, store: QualityBaselines, variant: BuiltVariant, benchmark: Benchmark,
             checks: list[Check], result: BenchResult) -> None:
        """Write the measured metrics into the baseline file; the test fails on purpose."""
        settings = result.settings
        store.provenance = PROVENANCE
        store.info = {**{k: settings[k] for k in ("batch_size", "lm_eval_version", "seed",
                                                  "max_length")},
                      "device": str(variant.model.device.type),
                      "dtype": str(variant.model.dtype).replace("torch.", ""),
                      "architecture": architecture_fingerprint(variant.spec)}
        try:
            verdicts = judge(checks, store, self.session.tolerance, update=True,
                             settings=settings)
        except JudgingError as exc:
            self._record(variant, benchmark, checks, ["pinned"] * len(checks), result)
            pytest.fail(str(exc), pytrace=False)
        self._record(variant, benchmark, checks, verdicts, result)
        pytest.fail("\n".join(v.message() for v in verdicts), pytrace=False)

    def _judge(self, store: QualityBaselines, variant: BuiltVariant, benchmark: Benchmark,
               checks: list[Check], result: BenchResult) -> None:
        """Compare each metric with its baseline; fail on regressions, skip when none has
        a baseline."""
        found = store.entry_for(variant.id, benchmark.name)
        if found is None:
            unmeasured(no_baseline_message(variant.slug, benchmark.name, str(store.path),
                                           store.why_absent(benchmark=benchmark.name)),
                       self.session.require_baselines)
        base_slug, base = found
        measured = {c.subject.metric: c.run for c in checks}
        diffs = store.settings_mismatch(benchmark.name, result.settings, base, measured,
                                        base_slug)
        if diffs:  # e.g. another data set: a comparison would measure nothing
            pytest.fail(f"{variant.spec.name} / {variant.slug} / {benchmark.name}: "
                        f"{mismatch_help(diffs)}", pytrace=False)
        failures, verdicts = [], []
        for c in checks:  # one at a time: a bad number fails its metric, not the others
            try:
                verdicts += judge([c], store, self.session.tolerance, update=False)
            except JudgingError as exc:
                failures.append(str(exc))
        self._record(variant, benchmark, [c for c in checks if _judged(c, verdicts)],
                     verdicts, result)
        failures += [v.message() for v in verdicts if v.failed]
        for v in verdicts:
            if v.outcome == "improvement":
                LOG.info("%s", v.message())
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)
        missing = [v.subject.metric for v in verdicts if v.outcome == "no baseline"]
        if len(missing) == len(checks):
            unmeasured(no_baseline_message(
                variant.slug, f"{benchmark.name} {', '.join(missing)}", str(store.path),
                store.why_absent(benchmark=benchmark.name, metrics=missing)),
                self.session.require_baselines)

    def _record(self, variant: BuiltVariant, benchmark: Benchmark, checks: list[Check],
                verdicts: list[Verdict | str], result: BenchResult) -> None:
        """One results-table row per metric (travels to the xdist controller)."""
        report, settings = variant.report, result.settings
        records = []
        for c, v in zip(checks, verdicts):
            judged = isinstance(v, Verdict) and v.judged
            extra = {"worse_by": v.worse_by} if judged else {}
            extra.update(cached=result.cached, limit=settings.get("limit"),
                         chat_template=settings.get("chat_template"),
                         batch_size=settings.get("batch_size"))
            extra.update(report_extra(report))  # removed layers, per-layer widths
            records.append(Record.of(
                variant.id, benchmark.name, c.subject.metric, c.run.value, kind=c.kind,
                verdict=_as_recorded(v), extra=extra, direction=c.direction,
                group=benchmark.group, stderr=c.run.stderr, n=c.run.n,
                intermediate_size=report.intermediate_size_after,
                expansion_ratio=report.expansion_ratio_after,
                params=report.total_params_after))
        emit(self.request.node, *records)


def _differences(pinned: dict, spec) -> str:
    """The fingerprint fields where the pinned model and ``spec`` differ, with both values."""
    now = architecture_fingerprint(spec)
    return ", ".join(f"{k} pinned {pinned.get(k)!r} vs {now.get(k)!r}"
                     for k in sorted(set(pinned) | set(now)) if pinned.get(k) != now.get(k))


def _judged(check: Check, verdicts: list[Verdict]) -> bool:
    return any(v.subject == check.subject for v in verdicts)


def _as_recorded(v: Verdict | str) -> Verdict | str:
    """What quality records have always carried: no baseline value on a pin, no detail
    on a missing baseline (results.json stays as it was)."""
    if isinstance(v, str) or v.outcome not in ("pinned", "no baseline"):
        return v
    return replace(v, baseline=None, baseline_stderr=None, bound=None, detail="")


def judge_for(request: pytest.FixtureRequest, session: EvalSession) -> Judge:
    """Build the ``glu_eval`` fixture value; skips early when the baseline has no entry.
    After the variant's last evaluation test the session releases its runner."""
    judge_ = Judge(session, request)
    vid, bench = eval_params(request.node)
    if vid is not None and bench is not None:
        def release_after_last() -> None:
            if last_evaluation_of_variant(request.node):
                session.release()
        request.addfinalizer(release_after_last)
        judge_.precheck(vid, bench)
    return judge_
