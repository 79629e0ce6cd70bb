"""The plugin is a pytest11 entry point (issue 19, point 10), so its options exist before
pytest parses arguments: ``--glu-report DIR`` (a space, as pytest-benchmark's
``--benchmark-json PATH``) works serially and under ``-n 2``, twice in a row.

Before (the plugin loaded from a conftest), under xdist the first run crashed both workers
(``maximum crashed workers reached``) and the second gave ``unrecognized arguments``;
serially the second run exited 4.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import glu_prune.plugin

TEST_FILE = """
def test_variant(variant, glu_record):
    assert variant.slug.startswith("tiny-llama-maw-p")
    glu_record(benchmark="piqa", metric="acc,none", kind="accuracy", value=0.5,
               verdict="ok")  # a record, so the run writes its report
"""


def test_the_plugin_is_a_pytest11_entry_point():
    (ep,) = [ep for ep in entry_points(group="pytest11") if ep.value == "glu_prune.plugin"]
    assert ep.load() is glu_prune.plugin


@pytest.mark.parametrize("workers", [
    [], pytest.param(["-n", "2"], marks=pytest.mark.slow),  # two worker start-ups per run
], ids=["serial", "xdist"])
def test_option_values_after_a_space_twice_in_a_row(fake_variants, tmp_path_factory, workers):
    fake_variants.makepyfile(test_space=TEST_FILE)
    # outside the test folder (pytest's early scan took an existing one for a test path);
    # absent on the first run, there on the second
    report = tmp_path_factory.mktemp("elsewhere") / "report"
    args = ["-p", "no:cacheprovider", *workers, "--glu-models", "tiny-llama",
            "--glu-levels", "0,40", "--glu-report", str(report),
            "--glu-cache-dir", str(fake_variants.path / "cache")]
    for run in (1, 2):
        result = fake_variants.runpytest_subprocess(*args, timeout=300)
        assert result.ret == pytest.ExitCode.OK, (run, result.stdout.str()[-2000:],
                                                  result.stderr.str()[-2000:])
        result.assert_outcomes(passed=2)
        assert (report / "results.md").is_file(), run
