"""Evaluation: settings, cache keys, the on-disk cache, metric extraction, one lm-eval call
per benchmark (against the tiny twins), and the pytest glue end to end (pytester).

Content identities and unreadable cache entries: test_eval_cache.py; kill and resume:
tests/plugin/test_resume.py."""

import math

import pytest

import glu_prune.evaluation.runner as runner_mod
from glu_prune import tiny
from glu_prune.catalog.benchmarks import get_benchmark
from glu_prune.evaluation import (BenchmarkFailed, BenchResult, EvalError, EvalSettings,
                                  MetricValue, ResultCache, TaskSource, cache_key, evaluate_variant,
                                  run_settings)
from glu_prune.evaluation.harness import extract_metrics, task_manager_for
from glu_prune.plugin.options import parse_ppl_tol

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
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
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
    monkeypatch.setattr("glu_prune.evaluation.runner.run_tasks", fake_run)
    monkeypatch.setattr("glu_prune.evaluation.runner.make_lm", lambda model, tok, settings: "lm")
    monkeypatch.setattr("glu_prune.evaluation.runner.model_identity", lambda m, t: "id")


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

    from glu_prune.core.loading import load_model

    real, seen = lm_eval.evaluator.evaluate, []

    def spy(**kwargs):
        out = real(**kwargs)
        seen.append((kwargs, out))
        return out
    monkeypatch.setattr(lm_eval.evaluator, "evaluate", spy)
    made = []
    real_make = runner_mod.make_lm
    monkeypatch.setattr(runner_mod, "make_lm", lambda *a: made.append(1) or real_make(*a))
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
