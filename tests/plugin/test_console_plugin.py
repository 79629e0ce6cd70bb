"""The console of a run: failures and errors in full, skips one line per reason.

pytest's ``-rs`` wrote one line per skipping place (107 ``Skipping non-benchmark`` lines
under ``--benchmark-only``); pytest.ini now asks for failures and errors only, and the
plugin counts skips by reason. pytest-benchmark's xdist warning appears only when a
selected test is a benchmark.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from types import SimpleNamespace

import pytest

from glu_prune.plugin.results import SKIP_KEY
from glu_prune.plugin.skips import MAX_REASON, skip_lines

SKIPPING = """
import pytest

@pytest.mark.parametrize("i", range(5))
def test_offline(i):
    pytest.skip("no weights for llama-3.2-1b (offline)")

@pytest.mark.parametrize("i", range(2))
def test_no_baseline(i):
    pytest.skip("no baseline for this variant")

def test_fails():
    assert 1 == 2
"""

BENCH = """
def test_timed(benchmark):
    benchmark(lambda: None)

def test_plain():
    pass
"""


def _skipped(reason: str) -> SimpleNamespace:
    return SimpleNamespace(skipped=True, longrepr=("f.py", 1, f"Skipped: {reason}"))


def test_skip_lines_count_each_reason_once_most_frequent_first():
    reports = [_skipped("b"), _skipped("a"), _skipped("a"),
               SimpleNamespace(skipped=False, longrepr=None), _skipped("two\nlines")]
    assert skip_lines(reports) == ["2 skipped: a", "1 skipped: b", "1 skipped: two lines"]
    [long] = skip_lines([_skipped("x" * 500)])
    assert len(long) == len("1 skipped: ") + MAX_REASON and long.endswith("…")


def test_skip_lines_name_a_suite_tests_own_variant_and_benchmark_generically():
    def tagged(slug: str, bench: str) -> SimpleNamespace:
        reason = f"no baseline for {slug} / {bench} in baselines/m.json (not pinned yet)"
        report = _skipped(reason)
        report.user_properties = [(SKIP_KEY, {"variant": slug, "benchmark": bench,
                                              "reason": reason})]
        return report
    reports = [tagged(f"m-maw-p{p}", b) for p in (0, 10, 20) for b in ("wikitext", "lambada")]
    assert skip_lines(reports + [_skipped("other")]) == [
        "6 skipped: no baseline for <variant> / <benchmark> in baselines/m.json (not pinned yet)",
        "1 skipped: other"]


def test_the_project_asks_pytest_for_failures_and_errors_only():
    ini = configparser.ConfigParser()
    ini.read(Path(__file__).resolve().parents[2] / "pytest.ini")
    flags = [a for a in ini["pytest"]["addopts"].split() if a.startswith("-r")]
    assert flags == ["-rfE"]


def test_console_one_line_per_skip_reason_and_failures_in_full(fake_variants):
    fake_variants.makepyfile(test_skips=SKIPPING)
    result = fake_variants.runpytest("-rfE", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=7)
    result.stdout.fnmatch_lines(["*skipped, by reason*",
                                 "5 skipped: no weights for llama-3.2-1b (offline)",
                                 "2 skipped: no baseline for this variant",
                                 "FAILED test_skips.py::test_fails*"])
    assert "SKIPPED [" not in result.stdout.str()


@pytest.mark.parametrize("selection, warned", [("plain", False), ("timed", True)])
def test_xdist_benchmark_warning_only_when_a_benchmark_is_selected(fake_variants,
                                                                   checkout_on_path,
                                                                   selection, warned):
    pytest.importorskip("xdist")
    fake_variants.makepyfile(test_bench=BENCH)
    result = fake_variants.runpytest_subprocess("-n", "2", "-k", selection,
                                                "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str() + result.stderr.str()
    assert ("automatically disabled because xdist" in text) is warned, text
