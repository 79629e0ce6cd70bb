"""The glu_eval flow end to end (pytester): evaluate once per variant, judge against the
baseline file, pin with --glu-update-baselines, fail with one message."""

import json

import pytest

from glu_prune.evaluation import MetricValue
from glu_prune.judging import QualityBaselines


# ---------------------------------------------------------------- the pytest glue (pytester)

CONFTEST = '''
import json
from pathlib import Path

import pytest

from glu_prune.evaluation import BenchResult, MetricValue, VariantRunner, run_settings
from glu_prune.plugin.session import session_of

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
    runner = session_of(item.config).quality.runner
    RESIDENT.append(runner.slug if runner else None)


def pytest_sessionfinish(session):
    root = Path(str(session.config.rootpath))
    root.joinpath("calls.json").write_text(json.dumps(CALLS))
    runner = session_of(session.config).quality.runner
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
    from glu_prune.core.loading import load_model
    from glu_prune.core.prune import prune_glu_mlp

    import glu_prune.plugin  # noqa: F401
    import lm_eval.tasks  # noqa: F401  (pins and settings checks read the task's version)

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
        "--glu-models", "tiny-llama", "--glu-levels", "40",
        "--glu-baselines-dir", "baselines", "--glu-cache-dir", "cache", "-k", "mmlu or piqa",
        "-rsf", *args)


def test_suite_passes_then_a_planted_regression_fails_with_the_full_message(suite):
    ok = _run(suite, {"acc,none": 0.6})
    ok.assert_outcomes(passed=2)
    assert json.loads((suite.path / "calls.json").read_text()) == [[P40, "mmlu"], [P40, "piqa"]]
    bad = _run(suite, {"acc,none": 0.45})
    bad.assert_outcomes(failed=1, passed=1)  # piqa's baseline is 0.5: 0.45 is within bound
    bad.stdout.fnmatch_lines([(
        f"*tiny-llama / {P40} / mmlu / acc,none regression: baseline 0.6000 ± 0.0200 (n=150), "
        f"measured 0.4500 ± 0.0200 (n=150); worse by 0.1500 vs bound 0.0566 = max(abs_floor "
        f"0.01, z 2 × sqrt(0.0200² + 0.0200²)) [[]baseline file *tiny-llama.json]; if the change "
        f"is expected, re-pin with --glu-update-baselines and review the diff")])


def test_suite_fails_on_a_settings_mismatch_naming_it(suite):
    res = _run(suite, {"acc,none": 0.6}, "--glu-limit", "5")
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*limit: baseline null (*benchmarks.mmlu.limit), this run 5*"])


def test_update_rewrites_measured_values_and_still_fails(suite):
    path = suite.path / "baselines" / "tiny-llama.json"
    res = _run(suite, {"acc,none": 0.61}, "--glu-update-baselines", "-k", "mmlu")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        f"*baseline pinned (--glu-update-baselines): tiny-llama / {P40} / mmlu / acc,none: "
        f"0.6 -> 0.61 in *tiny-llama.json; review the diff (git diff) and rerun without the flag"])
    data = json.loads(path.read_text())
    assert data["results"][P40]["mmlu"]["acc,none"] == {"value": 0.61, "stderr": 0.02, "n": 150}
    assert data["benchmarks"]["mmlu"]["task_version"] == "2.0"  # the twin's metadata.version
    assert "task_version" not in data["benchmarks"]["piqa"]  # not pinned: left as it was
    assert data["results"][P40]["piqa"]["acc,none"]["value"] == 0.5
    _run(suite, {"acc,none": 0.61}, "-k", "mmlu").assert_outcomes(passed=1)


def test_a_baseline_pinned_under_another_task_version_fails_naming_both(suite):
    """A twin whose prompt or data changed bumps its version (mmlu's cloze prompt: 2.0);
    scores pinned under the old version measured another test, so comparing them could
    pass a broken model (the lettered mmlu twin's 0.24 under today's 0.73)."""
    path = suite.path / "baselines" / "tiny-llama.json"
    data = json.loads(path.read_text())
    data["benchmarks"]["mmlu"]["task_version"] = "1.0"
    path.write_text(json.dumps(data))
    res = _run(suite, {"acc,none": 0.6})
    res.assert_outcomes(failed=1, passed=1)  # piqa's settings record no version: compared
    res.stdout.fnmatch_lines([
        '*task_version: baseline "1.0" (*benchmarks.mmlu.task_version), this run "2.0"*'])
    data["benchmarks"]["mmlu"]["task_version"] = "2.0"
    path.write_text(json.dumps(data))
    _run(suite, {"acc,none": 0.6}).assert_outcomes(passed=2)


def test_no_entry_skips_with_the_reason_and_a_corrupt_file_fails(suite):
    res = _run(suite, {}, "--glu-levels", "10")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*no baseline for tiny-llama-maw-p10 / mmlu in *tiny-llama.json "
                              "(not pinned yet); pin one with --glu-update-baselines and review the diff"])
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
    path = tmp_path / "tiny-llama.json"
    path.write_text(json.dumps({
        "format": 1, "model": "tiny-llama", "provenance": {}, "settings": {},
        "benchmarks": {"mmlu": {"task": "glu_tiny_mmlu", "num_fewshot": 5, "limit": None,
                                "chat_template": False}},
        "results": {P40: {"mmlu": {"acc,none": {"value": 0.6, "stderr": 0.02, "n": 150}}}}}))
    bf = QualityBaselines.load(tmp_path, "tiny-llama")
    run = {"task": "glu_tiny_mmlu", "num_fewshot": 5, "limit": None, "chat_template": False}
    base = bf.entry(P40, "mmlu")
    same = {"acc,none": MetricValue(0.1, 0.02, 150)}
    other = {"acc,none": MetricValue(0.6, 0.02, 146)}
    assert bf.settings_mismatch("mmlu", run, base, same, P40) == []
    assert bf.settings_mismatch("mmlu", run, base, other, P40) == [(
        f"n (samples) of acc,none: baseline 150 ({path} results.{P40}.mmlu.acc,none.n), "
        f"this run 146 with no limit: a different data set or revision of glu_tiny_mmlu")]
    assert bf.settings_mismatch("mmlu", {**run, "limit": 146}, base, other, P40) == [
        f"limit: baseline null ({path} benchmarks.mmlu.limit), this run 146"]
