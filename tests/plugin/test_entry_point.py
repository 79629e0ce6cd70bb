"""The plugin is a pytest11 entry point (issue 19, point 10).

Loaded from the root conftest, its options did not exist when pytest first parsed the
command line, so ``--glu-report DIR`` (a space, as pytest-benchmark's ``--benchmark-json
PATH`` takes it) crashed both xdist workers when DIR did not exist yet and was taken for
a test path when it did. As an entry point, every ``--glu-*`` option takes its value with
a space or ``=``, serially and under ``-n 2``, the same command twice in a row.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SUITE = '''
def test_record(variant, glu_record):
    glu_record(benchmark="fake", metric="acc", value=0.5, kind="accuracy", direction="higher")
'''


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    [ep] = [e for e in entry_points(group="pytest11") if e.name == "glu_prune"]
    assert ep.value == "glu_prune.plugin"
    root_conftest = Path(__file__).resolve().parents[2] / "conftest.py"
    assert "glu_prune.plugin" not in root_conftest.read_text().split('"""')[-1]


@pytest.mark.parametrize("spelling", ["space", "equals"])
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_options_take_their_value_with_a_space_or_equals_twice_in_a_row(
        fake_variants: pytest.Pytester, checkout_on_path: None, spelling: str,
        workers: list[str]):
    if workers:
        pytest.importorskip("xdist")
    fake_variants.makepyfile(test_fake=SUITE)
    report = "out/report"  # does not exist before the first run

    def option(name: str, value: str) -> list[str]:
        return [name, value] if spelling == "space" else [f"{name}={value}"]

    args = [*workers, "-p", "no:cacheprovider", *option("--glu-report", report),
            *option("--glu-models", "tiny-llama"), *option("--glu-levels", "0,40")]
    newest = []
    for run in (1, 2):
        result = fake_variants.runpytest_subprocess(*args, timeout=180)
        assert result.ret == 0, f"run {run}:\n{result.stdout.str()}\n{result.stderr.str()}"
        result.assert_outcomes(passed=2)
        data = json.loads((fake_variants.path / report / "results.json").read_text())
        assert {r["variant"] for r in data["records"]} == {"tiny-llama-maw-p0",
                                                           "tiny-llama-maw-p40"}
        newest.append(data["runs"][-1]["id"])
    assert newest[0] != newest[1]  # the second command wrote its own run
