"""The unit of work is one benchmark: a killed run resumes from the benchmarks it finished,
and a benchmark whose lm-eval call fails fails alone. Real lm-eval on the tiny model, in a
subprocess (a kill must not take the test runner with it); counts come from the cache
folder, not from timing.

Both fail on the old one-call-per-variant code: its single lm-eval call cached nothing
until every benchmark had finished, and one task's error failed all of the variant's tests.
"""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE_TEST = Path(__file__).resolve().parents[1] / "suite" / "test_accuracy.py"
BENCHMARKS = ("winogrande", "piqa", "boolq")  # registry order: the order they run in
KILLED = 75  # exit status of the simulated kill

# lm-eval's evaluate() is where model time starts (the old code reached it through
# simple_evaluate): when it is handed the named task, die there, or fail the call.
CONFTEST = '''
import os

import lm_eval.evaluator

# the glu-prune plugin loads as a pytest11 entry point

_real_evaluate = lm_eval.evaluator.evaluate


def _evaluate(*args, **kwargs):
    tasks = kwargs["task_dict"]["tasks"]
    if os.environ.get("GLU_TEST_DIE_AT") in tasks:
        os._exit(75)  # like a killed job: no cleanup, no finally blocks
    if os.environ.get("GLU_TEST_FAIL_AT") in tasks:
        raise ModuleNotFoundError("No module named 'langdetect'")
    return _real_evaluate(*args, **kwargs)


lm_eval.evaluator.evaluate = _evaluate
'''


@pytest.fixture
def tiny_suite(pytester: pytest.Pytester, checkout_on_path: None,
               monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The suite's accuracy test on the tiny model, with a baseline at --glu-limit=10 wide
    enough that every measurement passes (judging is not what is tested here)."""
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_accuracy=SUITE_TEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    accuracy: a\n")
    wide = {"value": 0.5, "stderr": 0.5, "n": 10}
    baseline = {"format": 1, "model": "tiny-llama", "provenance": {"source": "test"},
                "settings": {}, "benchmarks": {
                    b: {"task": f"glu_tiny_{b}", "num_fewshot": 0, "limit": 10,
                        "chat_template": False} for b in BENCHMARKS},
                "results": {"tiny-llama-maw-p0": {b: {"acc,none": wide}
                                                  for b in BENCHMARKS}}}
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "tiny-llama.json").write_text(json.dumps(baseline))
    return pytester


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--glu-models=tiny-llama",
        "--glu-levels=0", "--glu-limit=10", "--glu-baselines-dir=baselines",
        "--glu-cache-dir=cache", "--glu-report=results", "-k", " or ".join(BENCHMARKS),
        "-rf", timeout=600)


def _cached(pytester: pytest.Pytester) -> dict[str, tuple[int, bytes]]:
    """benchmark -> (mtime_ns, bytes) of each cached result."""
    return {p.name.split(".")[0]: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (pytester.path / "cache").rglob("*.json")}


def test_a_killed_run_loses_only_the_benchmark_in_flight(tiny_suite, monkeypatch):
    monkeypatch.setenv("GLU_TEST_DIE_AT", "glu_tiny_boolq")  # the last of the three
    killed = _run(tiny_suite)
    assert killed.ret == KILLED, killed.stdout.str()[-3000:]
    before = _cached(tiny_suite)
    assert sorted(before) == ["piqa", "winogrande"]  # finished before the kill, kept

    monkeypatch.delenv("GLU_TEST_DIE_AT")
    rerun = _run(tiny_suite)
    rerun.assert_outcomes(passed=3)
    after = _cached(tiny_suite)
    assert sorted(after) == ["boolq", "piqa", "winogrande"]  # only boolq was computed
    assert {b: after[b] for b in before} == before  # the others were read, not rewritten
    # the console's one line per benchmark (stderr) says the same
    rerun.stderr.fnmatch_lines(["*tiny-llama-maw-p0 winogrande: from the result cache*",
                                "*tiny-llama-maw-p0 piqa: from the result cache*",
                                "*tiny-llama-maw-p0 boolq: acc,none=*"])


def test_a_benchmark_whose_task_fails_fails_alone_and_the_rest_are_cached(tiny_suite,
                                                                          monkeypatch):
    monkeypatch.setenv("GLU_TEST_FAIL_AT", "glu_tiny_piqa")
    res = _run(tiny_suite)
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        ("*BenchmarkFailed: tiny-llama-maw-p0 / piqa: evaluation failed: "
         "ModuleNotFoundError: No module named 'langdetect'*"),
        "FAILED test_accuracy.py::test_accuracy[[]tiny-llama-maw-p0-piqa[]]*"])
    assert sorted(_cached(tiny_suite)) == ["boolq", "winogrande"]
