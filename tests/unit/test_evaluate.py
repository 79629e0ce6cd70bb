"""Evaluation: settings, cache keys, the on-disk cache, metric extraction, one lm-eval call
per benchmark (against the tiny twins), and the pytest glue end to end (pytester).

Content identities and unreadable cache entries: test_eval_cache.py; kill and resume:
tests/plugin/test_resume.py."""

import json
import math

import pytest

import glu_prune.evaluate as evaluate_mod
from glu_prune import tiny
from glu_prune.benchmarks import get_benchmark
from glu_prune.evaluate import (BenchmarkFailed, BenchResult, EvalError, EvalSettings,
                                MetricValue, ResultCache, TaskSource, cache_key, evaluate_variant,
                                extract_metrics, run_settings, task_manager_for)

pytest_plugins = ["pytester"]
MMLU = get_benchmark("tiny-llama", "mmlu")
WIKI = get_benchmark("tiny-llama", "wikitext")
GSM = get_benchmark("tiny-llama", "gsm8k")


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": "auto"}, "got 'auto'"),
    ({"limit": 0}, "limit must be None or an integer >= 1, got 0"),
    ({"bootstrap_iters": 0}, "bootstrap_iters must be an integer >= 1"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvalSettings(**kwargs)


def test_settings_record_fixes_versions_and_seeds():
    rec = EvalSettings(limit=5).record()
    assert rec["limit"] == 5 and rec["batch_size"] == 16 and rec["chat_template"] is False
    assert rec["lm_eval_version"].startswith("0.4") and rec["seed"] == 1234


def test_cache_key_changes_with_every_score_changing_setting():
    base = run_settings(MMLU, EvalSettings(), "abc", "t1")
    key = cache_key("s", "mmlu", base)
    assert key == cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(), "abc", "t1"))
    others = [cache_key("t", "mmlu", base), cache_key("s", "mmlu", {**base, "num_fewshot": 0}),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(limit=3), "abc", "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(batch_size=4), "abc", "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(chat_template=True), "abc",
                                                  "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(seed=7), "abc", "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(max_length=64), "abc",
                                                  "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(), "abd", "t1")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(), "abc", "t2")),
              cache_key("s", "mmlu", {**base, "lm_eval_version": "0.4.99"})]
    assert key not in others and len(set(others)) == len(others)


def test_ppl_tolerance_option_takes_a_number_or_pairs():
    from glu_prune.suite_eval import parse_ppl_tol

    assert parse_ppl_tol(None) == {} and parse_ppl_tol("0.1") == {"ppl_rel": 0.1}
    pairs = parse_ppl_tol("wikitext=0.2")["ppl_rel_by_benchmark"]
    assert pairs == {"lambada_openai": 0.1, "wikitext": 0.2}
    with pytest.raises(pytest.UsageError, match="expected name=value, got 'x'"):
        parse_ppl_tol("wikitext=0.2,x")


def _result(slug="v", bench=MMLU, value=0.5):
    return BenchResult(slug, bench.name, bench.task,
                       {m.key: MetricValue(value, 0.04, 150) for m in bench.metrics}, {"x": 1})


def test_cache_round_trip_is_atomic_and_corrupt_entries_are_recomputed(tmp_path):
    cache = ResultCache(tmp_path)
    path = cache.put(_result(), "k" * 64)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    got = cache.get("v", "mmlu", "k" * 64)
    assert got.cached and got.metrics == _result().metrics
    path.write_text("{broken")
    assert cache.get("v", "mmlu", "k" * 64) is None and cache.misses == 1


RAW = {"results": {"glu_tiny_mmlu": {"acc,none": 0.4, "acc_stderr,none": 0.04},
                   "grp": {"acc,none": 0.5, "acc_stderr,none": "N/A"}},
       "group_subtasks": {"grp": ["a", "sub"], "sub": ["b", "c"]},
       "n-samples": {"glu_tiny_mmlu": {"effective": 150}, "a": {"effective": 3},
                     "b": {"effective": 4}, "c": {"effective": 5}},
       "n-shot": {"glu_tiny_mmlu": 5}}


def test_extract_metrics_reads_values_stderrs_and_counts():
    assert extract_metrics(RAW, MMLU) == {"acc,none": MetricValue(0.4, 0.04, 150)}
    from dataclasses import replace

    grp = replace(MMLU, task="grp")
    assert extract_metrics(RAW, grp) == {"acc,none": MetricValue(0.5, None, 12)}  # leaves summed


def test_extract_metrics_names_what_is_missing():
    with pytest.raises(EvalError, match="did not report 'word_perplexity,none'; it reported: "
                                        "acc,none"):
        extract_metrics({"results": {"glu_tiny_wikitext": {"acc,none": 1.0}}}, WIKI)
    with pytest.raises(EvalError, match="reported nothing for task 'glu_tiny_gsm8k'"):
        extract_metrics(RAW, GSM)


def _fake_lm_eval(monkeypatch, calls, value=0.5, fail=None):
    """lm-eval replaced at its seams: each call records its tasks, and the task ``fail``
    raises the way a missing dependency does."""
    def fake_run(lm, tm, objects, settings):
        tasks = [getattr(o, "task_name", None) or o.name for o in objects]
        calls.append(tasks)
        if fail in tasks:
            raise ModuleNotFoundError("No module named 'langdetect'")
        benches = [b for b in (WIKI, MMLU, GSM, PIQA) if b.task in tasks]
        return {"results": {b.task: {m.key: value for m in b.metrics} for b in benches},
                "n-samples": {b.task: {"effective": 7} for b in benches},
                "n-shot": {b.task: b.num_fewshot for b in benches}}
    monkeypatch.setattr("glu_prune.evaluate.run_tasks", fake_run)
    monkeypatch.setattr("glu_prune.evaluate.make_lm", lambda model, tok, settings: "lm")
    monkeypatch.setattr("glu_prune.evaluate.model_identity", lambda m, t: "id")


PIQA = get_benchmark("tiny-llama", "piqa")


def test_one_call_per_benchmark_then_the_cache_costs_no_model_time(tmp_path, monkeypatch):
    calls: list = []
    _fake_lm_eval(monkeypatch, calls)
    cache, s, tasks = ResultCache(tmp_path), EvalSettings(), TaskSource()
    first = evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache, tasks=tasks)
    assert calls == [["glu_tiny_wikitext"], ["glu_tiny_mmlu"], ["glu_tiny_gsm8k"]]
    assert first.evaluated == ["wikitext", "mmlu", "gsm8k"] and not first.errors
    assert len(list((tmp_path / "v").iterdir())) == 3
    again = evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache, tasks=tasks)
    assert len(calls) == 3 and again.evaluated == [] and again.results["mmlu"].cached
    evaluate_variant(None, None, "v", [WIKI, MMLU], EvalSettings(limit=2), cache, tasks=tasks)
    assert calls[-2:] == [["glu_tiny_wikitext"], ["glu_tiny_mmlu"]]  # a new limit, a new key
    next(p for p in (tmp_path / "v").iterdir() if p.name.startswith("gsm8k")).unlink()
    evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache, tasks=tasks)
    assert calls[-1] == ["glu_tiny_gsm8k"] and len(calls) == 6  # resume: only what's missing


def test_a_failing_benchmark_fails_alone_and_the_others_are_kept(tmp_path, monkeypatch):
    """Fails on the old one-call-per-variant code: ifeval's missing langdetect lost boolq
    and piqa with it (and nothing was cached)."""
    calls: list = []
    _fake_lm_eval(monkeypatch, calls, fail="glu_tiny_mmlu")
    cache = ResultCache(tmp_path)
    out = evaluate_variant(None, None, "v", [WIKI, MMLU, PIQA], EvalSettings(), cache)
    assert set(out.results) == {"wikitext", "piqa"} and set(out.errors) == {"mmlu"}
    assert out.result("piqa").metrics["acc,none"].value == 0.5
    with pytest.raises(BenchmarkFailed, match="v / mmlu: evaluation failed: "
                                              "ModuleNotFoundError: No module named "
                                              "'langdetect'") as info:
        out.result("mmlu")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "v").iterdir()) == ["piqa",
                                                                               "wikitext"]


def test_a_task_that_does_not_load_fails_only_its_benchmark(tmp_path, monkeypatch):
    from dataclasses import replace

    calls: list = []
    _fake_lm_eval(monkeypatch, calls)
    broken = replace(MMLU, task="glu_tiny_no_such_task")
    twins_only = TaskSource(task_manager_for([WIKI]))  # indexing lm-eval's own tasks is slow
    out = evaluate_variant(None, None, "v", [WIKI, broken, PIQA], EvalSettings(),
                           ResultCache(tmp_path), tasks=twins_only)
    assert set(out.results) == {"wikitext", "piqa"} and calls == [["glu_tiny_wikitext"],
                                                                  ["glu_tiny_piqa"]]
    with pytest.raises(BenchmarkFailed, match="glu_tiny_no_such_task"):
        out.result("mmlu")


def test_nan_results_are_returned_but_never_cached(tmp_path, monkeypatch):
    calls: list = []
    _fake_lm_eval(monkeypatch, calls, value=float("nan"))
    cache = ResultCache(tmp_path)
    out = evaluate_variant(None, None, "v", [MMLU], EvalSettings(), cache)
    assert math.isnan(out.results["mmlu"].metrics["acc,none"].value)
    evaluate_variant(None, None, "v", [MMLU], EvalSettings(), cache)
    assert len(calls) == 2


def _tokenizer():
    from transformers import AutoTokenizer

    shipped = tiny.MODEL_DIRS["tiny-llama"]
    if (shipped / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(shipped)
    from glu_prune.tiny.corpus import training_docs
    from glu_prune.tiny.tokenizer import train_tokenizer

    return train_tokenizer(list(training_docs(200)))


def test_lm_eval_runs_once_per_benchmark_with_its_own_few_shot(tmp_path, monkeypatch):
    import lm_eval.evaluator

    from glu_prune.models import load_model

    real, seen = lm_eval.evaluator.evaluate, []

    def spy(**kwargs):
        out = real(**kwargs)
        seen.append((kwargs, out))
        return out
    monkeypatch.setattr(lm_eval.evaluator, "evaluate", spy)
    made = []
    real_make = evaluate_mod.make_lm
    monkeypatch.setattr(evaluate_mod, "make_lm", lambda *a: made.append(1) or real_make(*a))
    model, _ = load_model("tiny-llama", weights="random", device="cpu")
    tok = _tokenizer()
    ev = evaluate_variant(model, tok, "tiny-llama-maw-p0", [WIKI, MMLU, GSM],
                          EvalSettings(limit=2, batch_size=8), ResultCache(tmp_path))
    assert [list(call["task_dict"]["tasks"]) for call, _ in seen] == [
        ["glu_tiny_wikitext"], ["glu_tiny_mmlu"], ["glu_tiny_gsm8k"]]
    assert made == [1]  # one HFLM for the variant, reused by every call
    assert all(call["limit"] == 2 and call["cache_requests"] is False for call, _ in seen)
    assert [raw["n-shot"] for _, raw in seen] == [
        {"glu_tiny_wikitext": 0}, {"glu_tiny_mmlu": 5}, {"glu_tiny_gsm8k": 5}]
    mmlu = ev.results["mmlu"].metrics["acc,none"]
    assert 0 <= mmlu.value <= 1 and mmlu.n == 2 and mmlu.stderr is not None
    assert ev.results["wikitext"].metrics["word_perplexity,none"].value > 1
    assert set(ev.results["gsm8k"].metrics) == {"exact_match,strict-match",
                                                "exact_match,flexible-extract"}
    assert ev.results["mmlu"].settings["num_fewshot"] == 5


# ---------------------------------------------------------------- the pytest glue (pytester)

CONFTEST = '''
import json
from pathlib import Path

import pytest

import glu_prune.suite_eval as se
from glu_prune.evaluate import BenchResult, MetricValue, VariantRunner, run_settings

CALLS = []


@pytest.fixture(autouse=True)
def fake_eval(monkeypatch):
    """One benchmark per call, measuring what measured.json says ("fail": a benchmark
    whose evaluation raises; "n": the sample count)."""
    def fake(self, b):
        CALLS.append([self.slug, b.name])
        values = json.loads(Path(__file__).with_name("measured.json").read_text())
        if values.get("fail") == b.name:
            raise ModuleNotFoundError("No module named 'langdetect'")
        return BenchResult(self.slug, b.name, b.task, {
            m.key: MetricValue(values.get(m.key, 0.5), 0.02, values.get("n", 150))
            for m in b.metrics}, run_settings(b, self.settings, "fake", "task"))
    monkeypatch.setattr(VariantRunner, "run", fake)


RESIDENT = []  # at each test's start: the variant whose runner (model, HFLM) is held


def pytest_runtest_setup(item):
    runner = se.session_of(item.config).runner
    RESIDENT.append(runner.slug if runner else None)


def pytest_sessionfinish(session):
    root = Path(str(session.config.rootpath))
    root.joinpath("calls.json").write_text(json.dumps(CALLS))
    runner = se.session_of(session.config).runner
    root.joinpath("resident.json").write_text(json.dumps(RESIDENT + [runner and runner.slug]))
'''
TEST = '''
import pytest

pytestmark = pytest.mark.accuracy


def test_accuracy(glu_eval, variant, accuracy_benchmark):
    glu_eval.check(variant, accuracy_benchmark, "accuracy")
'''
P40 = "tiny-llama-maw-p40"


@pytest.fixture(scope="module")
def warm():
    """Import what building a variant imports, before pytester snapshots sys.modules: a
    re-import of torch.distributed in a later in-process run registers its ops twice."""
    from glu_prune.models import load_model
    from glu_prune.prune import prune_glu_mlp

    import glu_prune.pytest_plugin  # noqa: F401

    model, _ = load_model("tiny-llama", device="cpu")
    prune_glu_mlp(model, pct=40, method="maw")


@pytest.fixture
def suite(pytester, warm):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_acc=TEST)
    pytester.makeini("[pytest]\nmarkers =\n    accuracy: a\n")
    (pytester.path / "baselines").mkdir()
    data = {"format": 1, "model": "tiny-llama", "provenance": {"source": "test"},
            "settings": {}, "benchmarks": {
                b: {"task": f"glu_tiny_{b}", "num_fewshot": 5 if b == "mmlu" else 0,
                    "limit": None, "chat_template": False} for b in ("mmlu", "piqa")},
            "results": {P40: {
                "mmlu": {"acc,none": {"value": 0.6, "stderr": 0.02, "n": 150}},
                "piqa": {"acc,none": {"value": 0.5, "stderr": 0.02, "n": 150}}}}}
    (pytester.path / "baselines" / "tiny-llama.json").write_text(json.dumps(data, indent=2))
    return pytester


def _run(pytester, measured, *args):
    (pytester.path / "measured.json").write_text(json.dumps(measured))
    return pytester.runpytest_inprocess(
        "-p", "glu_prune.pytest_plugin", "--glu-models", "tiny-llama", "--glu-levels", "40",
        "--glu-baselines-dir", "baselines", "--glu-cache-dir", "cache", "-k", "mmlu or piqa",
        "-rsf", *args)


def test_suite_passes_then_a_planted_regression_fails_with_the_full_message(suite):
    ok = _run(suite, {"acc,none": 0.6})
    ok.assert_outcomes(passed=2)
    assert json.loads((suite.path / "calls.json").read_text()) == [[P40, "mmlu"], [P40, "piqa"]]
    bad = _run(suite, {"acc,none": 0.45})
    bad.assert_outcomes(failed=1, passed=1)  # piqa's baseline is 0.5: 0.45 is within bound
    bad.stdout.fnmatch_lines([(
        f"*tiny-llama / {P40} / mmlu / acc,none regressed: baseline 0.6000 ± 0.0200 (n=150), "
        f"measured 0.4500 ± 0.0200 (n=150); worse by 0.1500 vs bound 0.0566 = max(abs_floor "
        f"0.01, z 2 × sqrt(0.0200² + 0.0200²))*tiny-llama.json*")])


def test_suite_fails_on_a_settings_mismatch_naming_it(suite):
    res = _run(suite, {"acc,none": 0.6}, "--glu-limit", "5")
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*limit: baseline null (*benchmarks.mmlu.limit), this run 5*"])


def test_update_rewrites_measured_values_and_still_fails(suite):
    path = suite.path / "baselines" / "tiny-llama.json"
    res = _run(suite, {"acc,none": 0.61}, "--glu-update-baselines", "-k", "mmlu")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*baseline updated (--glu-update-baselines)*acc,none: 0.6 -> 0.61*"])
    data = json.loads(path.read_text())
    assert data["results"][P40]["mmlu"]["acc,none"] == {"value": 0.61, "stderr": 0.02, "n": 150}
    assert data["results"][P40]["piqa"]["acc,none"]["value"] == 0.5
    _run(suite, {"acc,none": 0.61}, "-k", "mmlu").assert_outcomes(passed=1)


def test_no_entry_skips_with_the_reason_and_a_corrupt_file_fails(suite):
    res = _run(suite, {}, "--glu-levels", "10")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*no baseline for tiny-llama-maw-p10 / mmlu in *tiny-llama.json*"])
    (suite.path / "baselines" / "tiny-llama.json").write_text("{oops")
    bad = _run(suite, {})
    bad.assert_outcomes(failed=2)
    bad.stdout.fnmatch_lines(["*tiny-llama.json: not valid JSON*"])


def test_a_variant_is_released_after_its_last_evaluation_test(suite):
    """Its model and lm-eval wrapper are not held while the next variant is built."""
    data = json.loads((suite.path / "baselines" / "tiny-llama.json").read_text())
    data["results"]["tiny-llama-maw-p10"] = data["results"][P40]
    (suite.path / "baselines" / "tiny-llama.json").write_text(json.dumps(data))
    _run(suite, {"acc,none": 0.6}, "--glu-levels", "10,40").assert_outcomes(passed=4)
    held = json.loads((suite.path / "resident.json").read_text())
    assert held == [None, "tiny-llama-maw-p10", None, P40, None]  # last: after the session


def test_a_failing_benchmark_fails_only_its_own_test_with_its_own_error(suite):
    res = _run(suite, {"acc,none": 0.6, "fail": "mmlu"})
    res.assert_outcomes(failed=1, passed=1)
    res.stdout.fnmatch_lines([(f"E*BenchmarkFailed: {P40} / mmlu: evaluation failed: "
                               f"ModuleNotFoundError: No module named 'langdetect'"),
                              f"FAILED test_acc.py::test_accuracy[{P40}-mmlu]*"])
    assert json.loads((suite.path / "calls.json").read_text()) == [[P40, "mmlu"], [P40, "piqa"]]


def test_a_sample_count_unlike_the_baselines_is_a_data_mismatch_not_a_comparison(suite):
    """Fails on the old code, which compared 0.6 (n=146) with 0.6 (n=150) and passed."""
    res = _run(suite, {"acc,none": 0.6, "n": 146})
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines([(
        f"*n (samples) of acc,none: baseline 150 (*tiny-llama.json results.{P40}.mmlu."
        f"acc,none.n), this run 146 with no limit: a different data set or revision of "
        f"glu_tiny_mmlu*")])


def test_with_a_limit_the_sample_count_is_not_checked_again(suite):
    path = suite.path / "baselines" / "tiny-llama.json"
    data = json.loads(path.read_text())
    for settings in data["benchmarks"].values():
        settings["limit"] = 5
    path.write_text(json.dumps(data))
    _run(suite, {"acc,none": 0.6, "n": 5}, "--glu-limit", "5").assert_outcomes(passed=2)


def test_settings_mismatch_names_both_counts_only_without_a_limit(tmp_path):
    from glu_prune.baselines import load_baseline, settings_mismatch

    path = tmp_path / "tiny-llama.json"
    path.write_text(json.dumps({
        "format": 1, "model": "tiny-llama", "provenance": {}, "settings": {},
        "benchmarks": {"mmlu": {"task": "glu_tiny_mmlu", "num_fewshot": 5, "limit": None,
                                "chat_template": False}},
        "results": {P40: {"mmlu": {"acc,none": {"value": 0.6, "stderr": 0.02, "n": 150}}}}}))
    bf = load_baseline(path)
    run = {"task": "glu_tiny_mmlu", "num_fewshot": 5, "limit": None, "chat_template": False}
    base = bf.entry(P40, "mmlu")
    same = {"acc,none": MetricValue(0.1, 0.02, 150)}
    other = {"acc,none": MetricValue(0.6, 0.02, 146)}
    assert settings_mismatch(bf, "mmlu", run, base, same, P40) == []
    assert settings_mismatch(bf, "mmlu", run, base, other, P40) == [(
        f"n (samples) of acc,none: baseline 150 ({path} results.{P40}.mmlu.acc,none.n), "
        f"this run 146 with no limit: a different data set or revision of glu_tiny_mmlu")]
    assert settings_mismatch(bf, "mmlu", {**run, "limit": 146}, base, other, P40) == [
        f"limit: baseline null ({path} benchmarks.mmlu.limit), this run 146"]
