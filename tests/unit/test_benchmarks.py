"""The benchmark registry: sets, order, few-shot, metrics, directions and groups."""

import pytest

from glu_prune import tiny
from glu_prune.catalog.benchmarks import (BENCHMARK_SETS, Benchmark, Metric, benchmark_set,
                                          benchmarks_for, get_benchmark)
from glu_prune.catalog.models import MODELS

BASE = ["wikitext", "mmlu", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq",
        "lambada_openai", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k", "ifeval",
        "leaderboard_musr"]
INSTRUCT = ["leaderboard_musr", "truthfulqa_mc1", "truthfulqa_mc2", "lambada_openai", "mmlu",
            "gsm8k", "ifeval"]
KEYS = {
    "wikitext": ["word_perplexity,none"], "mmlu": ["acc,none"],
    "arc_challenge": ["acc_norm,none", "acc,none"], "hellaswag": ["acc_norm,none"],
    "winogrande": ["acc,none"], "piqa": ["acc,none"], "boolq": ["acc,none"],
    "lambada_openai": ["perplexity,none", "acc,none"], "truthfulqa_mc1": ["acc,none"],
    "truthfulqa_mc2": ["acc,none"],
    "gsm8k": ["exact_match,strict-match", "exact_match,flexible-extract"],
    "ifeval": ["prompt_level_strict_acc,none", "inst_level_strict_acc,none"],
    "leaderboard_musr": ["acc_norm,none"]}
ROBUST = {"ifeval", "leaderboard_musr", "truthfulqa_mc1", "truthfulqa_mc2"}
SIZES = {"mmlu": 14042, "arc_challenge": 1172, "hellaswag": 10042, "winogrande": 1267,
         "piqa": 1838, "boolq": 3270, "lambada_openai": 5153, "truthfulqa_mc1": 817,
         "truthfulqa_mc2": 817, "gsm8k": 1319, "ifeval": 541, "leaderboard_musr": 756}


@pytest.mark.parametrize("name, expected", [("base", BASE), ("instruct", INSTRUCT),
                                            ("tiny", BASE), ("tiny-instruct", INSTRUCT)])
def test_sets_hold_the_study_benchmarks_in_registry_order(name, expected):
    assert [b.name for b in benchmark_set(name)] == expected


def test_real_benchmarks_run_the_lm_eval_task_of_their_name():
    for b in benchmark_set("base"):
        assert b.task == b.name


def test_twins_use_the_tiny_tasks_and_keep_few_shot_and_metrics():
    real = {b.name: b for b in benchmark_set("base")}
    for b in benchmark_set("tiny"):
        assert b.task == tiny.TWIN_TASKS[b.name] == f"glu_tiny_{b.name}"
        assert (b.num_fewshot, b.metrics, b.group) == (real[b.name].num_fewshot,
                                                      real[b.name].metrics, real[b.name].group)


def test_few_shot_is_five_for_mmlu_and_gsm8k_only():
    shots = {b.name: b.num_fewshot for b in benchmark_set("base")}
    assert shots == {n: (5 if n in ("mmlu", "gsm8k") else 0) for n in BASE}


def test_metric_keys_directions_and_kinds():
    for b in benchmark_set("base"):
        assert [m.key for m in b.metrics] == KEYS[b.name]
        for m in b.metrics:
            assert m.kind == ("perplexity" if "perplexity" in m.key else "accuracy")
            assert m.direction == ("lower" if m.kind == "perplexity" else "higher")


def test_lambada_is_judged_in_both_suites_wikitext_only_for_perplexity():
    lam = get_benchmark("llama-3.2-1b", "lambada_openai")
    assert [m.key for m in lam.metrics_of("perplexity")] == ["perplexity,none"]
    assert [m.key for m in lam.metrics_of("accuracy")] == ["acc,none"]
    wiki = get_benchmark("llama-3.2-1b", "wikitext")
    assert wiki.has_perplexity and not wiki.has_accuracy
    assert [b.name for b in benchmark_set("base") if b.has_perplexity] == ["wikitext",
                                                                          "lambada_openai"]


def test_groups_follow_the_study():
    for b in benchmark_set("base"):
        assert b.group == ("robust" if b.name in ROBUST else "fragile"), b.name


def test_test_set_sizes_are_lm_eval_defaults():
    for b in benchmark_set("base"):
        if b.name in SIZES:
            assert b.n == SIZES[b.name]


def test_every_registered_model_has_its_set():
    for name, spec in MODELS.items():
        assert benchmarks_for(name) == list(BENCHMARK_SETS[spec.benchmark_set])


def test_unknown_names_are_errors_that_list_the_valid_ones():
    with pytest.raises(KeyError, match="unknown benchmark set 'nope'; known: base, instruct"):
        benchmark_set("nope")
    with pytest.raises(KeyError, match="unknown benchmark 'wikitext' for model "
                                       "llama-3.2-1b-instruct; known: leaderboard_musr"):
        get_benchmark("llama-3.2-1b-instruct", "wikitext")
    with pytest.raises(KeyError, match="mmlu has no metric 'acc_norm,none'; its metrics: "
                                       "acc,none"):
        get_benchmark("llama-3.2-1b", "mmlu").metric("acc_norm,none")


@pytest.mark.parametrize("args, match", [
    (("acc", "higher", "accuracy"), "'metric,filter' form, got 'acc'"),
    (("acc,none", "up", "accuracy"), "'higher' or 'lower', got 'up'"),
    (("acc,none", "higher", "speed"), "kind must be one of"),
])
def test_bad_metric_definitions_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        Metric(*args)


def test_bad_benchmark_definitions_are_refused():
    with pytest.raises(ValueError, match="group must be one of"):
        Benchmark("x", "x", 0, (Metric("acc,none", "higher", "accuracy"),), "other", 1)
    with pytest.raises(ValueError, match="at least one metric"):
        Benchmark("x", "x", 0, (), "fragile", 1)


def test_stderr_key_follows_lm_eval():
    assert Metric("exact_match,strict-match", "higher", "accuracy").stderr_key == \
        "exact_match_stderr,strict-match"
