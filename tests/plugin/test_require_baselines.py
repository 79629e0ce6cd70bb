"""Measuring nothing is never silent (issue 19, point 5): without ``--glu-require-baselines``
the summary and results.md say in one line how many selected tests were skipped and why;
with it, every "no baseline" and "no weights" skip is a failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import glu_prune

# The suite's own skip paths, without building or evaluating anything: the ``variant``
# fixture is the session's (weights looked up, here never found); the judge's precheck
# skips for want of a baseline entry.
CONFTEST = '''
import pytest

from glu_prune.core.loading import WeightsUnavailable
from glu_prune.plugin import session_of

# the glu-prune plugin loads as a pytest11 entry point


@pytest.fixture(autouse=True)
def offline(request, monkeypatch):
    session = session_of(request.config)

    def unavailable(variant_id):
        raise WeightsUnavailable(f"no weights for {variant_id.model} (offline); "
                                 "see the README on running real models")
    monkeypatch.setattr(session.cache, "get", unavailable)
'''

REPO = Path(glu_prune.__file__).resolve().parent.parent


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """The real accuracy test, weights never found: p0 has a published baseline (so it
    reaches the weights and skips there), p40's is removed (it skips before building)."""
    data = json.loads((REPO / "baselines" / "llama-3.2-1b.json").read_text())
    del data["results"]["llama-3.2-1b-maw-p40"]
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "llama-3.2-1b.json").write_text(json.dumps(data))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_s=(REPO / "tests" / "suite" / "test_accuracy.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    accuracy: a\n")
    return pytester


ARGS = ("-p", "no:cacheprovider", "--glu-models", "llama-3.2-1b", "--glu-levels", "0,40",
        "--glu-report", "out", "--glu-baselines-dir", "baselines", "-k", "mmlu")


def test_skips_say_in_one_line_how_many_measured_nothing_and_why(suite):
    res = suite.runpytest(*ARGS[:-2], "-k", "mmlu and p0")
    res.assert_outcomes(skipped=1)
    line = "1 of 1 skipped: no weights for llama-3.2-1b (offline)"
    res.stdout.fnmatch_lines([line])
    assert f"> {line}\n" in (suite.path / "out" / "results.md").read_text()
    both = suite.runpytest(*ARGS)
    both.assert_outcomes(skipped=2)
    both.stdout.fnmatch_lines(["2 of 2 skipped: 1 × no baseline for <variant> / <benchmark> "
                               "in *; 1 × no weights for llama-3.2-1b (offline)"])
    assert "2 of 2 skipped: " in (suite.path / "out" / "results.md").read_text()


def test_require_baselines_turns_no_weights_and_no_baseline_skips_into_failures(suite):
    res = suite.runpytest(*ARGS, "--glu-require-baselines", "-rE")
    res.assert_outcomes(errors=2)  # both stop in fixtures (glu_eval, variant), before any test
    res.stdout.fnmatch_lines([
        "*no baseline for llama-3.2-1b-maw-p40 / mmlu *[[]--glu-require-baselines: measuring "
        "nothing is a failure]*",
        "*no weights for llama-3.2-1b (offline)*[[]--glu-require-baselines: measuring "
        "nothing is a failure]*"], consecutive=False)
