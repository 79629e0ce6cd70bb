"""Every run leaves a record: a run whose tests all failed or errored marks the report
(banner and Runs table) and ``report check`` exits non-zero on it (issue 19, point 4)."""

from __future__ import annotations

import json

import pytest

from glu_prune.cli import main

GOOD = '''
def test_accuracy(glu_record, variant, variant_id):
    glu_record(benchmark="mmlu", metric="acc,none", kind="accuracy", value=0.5,
               baseline=0.5, verdict="ok")
'''

PINNING = '''
import pytest

def test_accuracy(glu_record, variant, variant_id):
    glu_record(benchmark="mmlu", metric="acc,none", kind="accuracy", value=0.5,
               baseline=0.5, verdict="pinned")
    pytest.fail("baseline pinned (--glu-update-baselines): review the diff")
'''

BROKEN = '''
import pytest

@pytest.fixture
def weights(variant_id):
    raise OSError(f"{variant_id.slug}: model.safetensors is corrupt")

def test_accuracy(glu_record, variant, weights):
    pass
'''


def test_a_run_whose_tests_all_error_marks_the_report_and_fails_report_check(
        fake_variants: pytest.Pytester, capsys: pytest.CaptureFixture):
    pytester = fake_variants
    args = ("-p", "no:cacheprovider", "--glu-models", "tiny-llama", "--glu-levels", "0,40",
            "--glu-report", "out")
    pytester.makepyfile(test_s=GOOD)
    pytester.runpytest(*args).assert_outcomes(passed=2)
    report = str(pytester.path / "out" / "results.json")
    assert main(["report", "check", report]) == 0
    pytester.makepyfile(test_s=BROKEN)
    res = pytester.runpytest(*args)
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(["*FAILED RUN: all 2 tests that ran failed or errored*"])
    res.stdout.no_fnmatch_line("*nothing written*")
    md = (pytester.path / "out" / "results.md").read_text()
    assert md.startswith("> **FAILED RUN r2: all 2 tests that ran failed or errored, so it "
                         "measured nothing.** First: test_s.py::test_accuracy"
                         "[tiny-llama-maw-p0]: OSError: tiny-llama-maw-p0: model.safetensors "
                         "is corrupt")
    assert "| FAILED: all 2 tests failed or errored |" in md.replace("  ", "")
    runs = json.loads((pytester.path / "out" / "results.json").read_text())["runs"]
    assert runs[-1]["tests"] == {"selected": 2, "ran": 2, "failed": 2, "measured": 0}
    capsys.readouterr()
    assert main(["report", "check", report]) == 1
    assert "FAILED RUN r2" in capsys.readouterr().out
    # the next good run replaces it: the folder is green again
    pytester.makepyfile(test_s=GOOD)
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert main(["report", "check", report]) == 0


def test_a_run_whose_failing_tests_all_recorded_does_not_claim_it_measured_nothing(
        fake_variants: pytest.Pytester):
    """A pinning run fails every test on purpose after recording: the banner still marks the
    run, but does not say it measured nothing, and its records are in the report."""
    pytester = fake_variants
    pytester.makepyfile(test_s=PINNING)
    res = pytester.runpytest("-p", "no:cacheprovider", "--glu-models", "tiny-llama",
                             "--glu-levels", "0,40", "--glu-report", "out")
    res.assert_outcomes(failed=2)
    md = (pytester.path / "out" / "results.md").read_text()
    assert md.startswith("> **FAILED RUN: all 2 tests that ran failed or errored; 2 of them "
                         "recorded their measurements, shown below.** First: ")
    assert "measured nothing" not in md
    runs = json.loads((pytester.path / "out" / "results.json").read_text())["runs"]
    assert runs[-1]["tests"] == {"selected": 2, "ran": 2, "failed": 2, "measured": 2}
