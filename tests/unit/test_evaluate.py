"""Evaluation: settings, cache keys, the on-disk cache, metric extraction, one lm-eval call
per variant (against the tiny twins), and the pytest glue end to end (pytester)."""

import copy
import json
import math

import pytest
import torch

from glu_prune import tiny
from glu_prune.benchmarks import get_benchmark
from glu_prune.evaluate import (BenchResult, EvalError, EvalSettings, MetricValue, ResultCache,
                                cache_key, evaluate_variant, extract_metrics, model_identity,
                                run_settings)

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
    base = run_settings(MMLU, EvalSettings(), "abc")
    key = cache_key("s", "mmlu", base)
    assert key == cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(), "abc"))
    others = [cache_key("t", "mmlu", base), cache_key("s", "mmlu", {**base, "num_fewshot": 0}),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(limit=3), "abc")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(batch_size=4), "abc")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(chat_template=True), "abc")),
              cache_key("s", "mmlu", run_settings(MMLU, EvalSettings(), "abd")),
              cache_key("s", "mmlu", {**base, "lm_eval_version": "0.4.99"})]
    assert key not in others and len(set(others)) == len(others)


def test_model_identity_follows_the_weights():
    from glu_prune.models import load_model

    model, _ = load_model("tiny-llama", weights="random", device="cpu")
    twin = copy.deepcopy(model)
    assert model_identity(model, None) == model_identity(twin, None)
    with torch.no_grad():
        twin.model.layers[0].mlp.down_proj.weight[0, 0] += 1.0
    assert model_identity(model, None) != model_identity(twin, None)


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


def _fake_lm_eval(monkeypatch, calls, value=0.5):
    def fake(model, tokenizer, benchmarks, settings):
        calls.append([b.name for b in benchmarks])
        return {"results": {b.task: {m.key: value for m in b.metrics} for b in benchmarks},
                "n-samples": {b.task: {"effective": 7} for b in benchmarks},
                "n-shot": {b.task: b.num_fewshot for b in benchmarks}}
    monkeypatch.setattr("glu_prune.evaluate.run_lm_eval", fake)
    monkeypatch.setattr("glu_prune.evaluate.model_identity", lambda m, t: "id")


def test_one_call_per_variant_then_the_cache_costs_no_model_time(tmp_path, monkeypatch):
    calls: list = []
    _fake_lm_eval(monkeypatch, calls)
    cache, s = ResultCache(tmp_path), EvalSettings()
    first = evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache)
    assert calls == [["wikitext", "mmlu", "gsm8k"]] and first.evaluated == ["wikitext", "mmlu",
                                                                             "gsm8k"]
    again = evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache)
    assert len(calls) == 1 and again.evaluated == [] and again.results["mmlu"].cached
    evaluate_variant(None, None, "v", [WIKI, MMLU], EvalSettings(limit=2), cache)
    assert calls[-1] == ["wikitext", "mmlu"]  # a new limit is a new key
    (tmp_path / "v").joinpath(next(p.name for p in (tmp_path / "v").iterdir()
                                   if p.name.startswith("gsm8k"))).unlink()
    evaluate_variant(None, None, "v", [WIKI, MMLU, GSM], s, cache)  # resume: only what's missing
    assert calls[-1] == ["gsm8k"]


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


def test_lm_eval_runs_once_over_all_benchmarks_with_their_own_few_shot(tmp_path, monkeypatch):
    import lm_eval

    from glu_prune.models import load_model

    real, seen = lm_eval.simple_evaluate, []

    def spy(**kwargs):
        seen.append(kwargs)
        out = real(**kwargs)
        seen.append(out)
        return out
    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    model, _ = load_model("tiny-llama", weights="random", device="cpu")
    tok = _tokenizer()
    ev = evaluate_variant(model, tok, "tiny-llama-maw-p0", [WIKI, MMLU, GSM],
                          EvalSettings(limit=2, batch_size=8), ResultCache(tmp_path))
    call, raw = seen
    assert len(seen) == 2 and call["use_cache"] is None and call["limit"] == 2
    assert raw["n-shot"]["glu_tiny_mmlu"] == 5 and raw["n-shot"]["glu_tiny_gsm8k"] == 5
    assert raw["n-shot"]["glu_tiny_wikitext"] == 0
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
from glu_prune.evaluate import BenchResult, MetricValue, VariantEvaluation, run_settings

CALLS = []


@pytest.fixture(autouse=True)
def fake_eval(monkeypatch):
    def fake(model, tok, slug, wanted, settings, cache, say):
        CALLS.append([slug, [b.name for b in wanted]])
        values = json.loads(Path(__file__).with_name("measured.json").read_text())
        out = VariantEvaluation(slug)
        for b in wanted:
            out.results[b.name] = BenchResult(slug, b.name, b.task, {
                m.key: MetricValue(values.get(m.key, 0.5), 0.02, 150) for m in b.metrics},
                run_settings(b, settings, "fake"))
        return out
    monkeypatch.setattr(se, "evaluate_variant", fake)


def pytest_sessionfinish(session):
    Path(str(session.config.rootpath), "calls.json").write_text(json.dumps(CALLS))
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
    assert json.loads((suite.path / "calls.json").read_text()) == [[P40, ["mmlu", "piqa"]]]
    bad = _run(suite, {"acc,none": 0.45})
    bad.assert_outcomes(failed=1, passed=1)  # piqa's baseline is 0.5: 0.45 is within bound
    bad.stdout.fnmatch_lines([
        f"*tiny-llama / {P40} / mmlu / acc,none regressed: baseline 0.6000 ± 0.0200 (n=150), "
        f"measured 0.4500 ± 0.0200 (n=150); worse by 0.1500 vs bound 0.0566 = max(abs_floor "
        f"0.01, z 2 × sqrt(0.0200² + 0.0200²))*tiny-llama.json*"])


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
