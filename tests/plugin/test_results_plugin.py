"""The results plugin end to end (pytester): serial vs xdist, marks, merge, step summary,
the report folder accumulating runs, and skipped tests' reasons."""

from __future__ import annotations

import json
import re

import pytest

from glu_prune.cli import main

# A fake suite: fixed numbers, no model loading. Tests are written in reverse registry and
# level order, so the table's order has to come from the plugin, not from the run order.
FAKE_SUITE = '''
import pytest

LEVELS = [40, 10, 0]
VALUES = {  # benchmark -> (metric, kind, value per level 0/10/40)
    "truthfulqa_mc1": ("acc,none", "accuracy", (0.30, 0.30, 0.33)),
    "mmlu": ("acc,none", "accuracy", (0.50, 0.45, 0.30)),
    "wikitext": ("word_perplexity,none", "perplexity", (20.0, 25.0, 40.0)),
}


@pytest.mark.parametrize("pct", LEVELS, ids=lambda p: f"p{p}")
@pytest.mark.parametrize("bench", list(VALUES))
def test_quality(glu_record, bench, pct):
    metric, kind, values = VALUES[bench]
    value = values[[0, 10, 40].index(pct)]
    verdict = "regression" if (bench, pct) == ("mmlu", 40) else "ok"
    glu_record(model="tiny-llama", pct=pct, benchmark=bench, metric=metric,
               kind=kind, value=value, stderr=0.01, baseline=value, verdict=verdict)
    if verdict == "regression":
        pytest.fail("mmlu regressed")


@pytest.mark.parametrize("pct", LEVELS, ids=lambda p: f"p{p}")
def test_eval_shape(glu_record, pct):
    # what the eval suite records: schema names, group and direction given
    glu_record(model="tiny-llama", pct=pct, benchmark="piqa", metric="acc,none",
               kind="accuracy", direction="higher", value=0.6 - pct / 1000, stderr=0.02,
               verdict="ok", baseline=0.6, group="fragile")


@pytest.mark.parametrize("pct", LEVELS, ids=lambda p: f"p{p}")
def test_speed(glu_record, pct):
    glu_record(model="tiny-llama", pct=pct, benchmark="ttft@128", metric="median_s",
               kind="latency", direction="lower", value=0.02 * (1 - pct / 200), unit="s",
               verdict="ok", ideal=1 + pct / 100)
    pytest.skip("records of skipped tests are kept")
'''


def make_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("")  # the plugin itself loads as an entry point
    pytester.makepyfile(test_fake=FAKE_SUITE)


def load(pytester: pytest.Pytester, folder: str) -> tuple[list[dict], str]:
    doc = json.loads((pytester.path / folder / "results.json").read_text())
    return doc["records"], (pytester.path / folder / "results.md").read_text()


def run_inline(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def measured(records: list[dict]) -> list[dict]:
    """Records without the id of the run that measured them (differs between runs)."""
    return [{**r, "extra": {k: v for k, v in r["extra"].items() if k != "run"}}
            for r in records]


def tables(md: str) -> str:
    """results.md from the first model on (the runs table above names times and commands)."""
    return md[md.index("\n## "):]


def test_serial_and_xdist_write_identical_records_and_tables(pytester: pytest.Pytester,
                                                             checkout_on_path: None):
    make_suite(pytester)
    serial = run_inline(pytester, "--glu-report", "serial")
    serial.assert_outcomes(passed=11, failed=1, skipped=3)
    xdist = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                          "--glu-report", "xdist", timeout=180)
    xdist.assert_outcomes(passed=11, failed=1, skipped=3)
    records, md = load(pytester, "serial")
    assert len(records) == 15
    xdist_records, xdist_md = load(pytester, "xdist")
    assert measured(records) == measured(xdist_records) and tables(md) == tables(xdist_md)
    # registry order (wikitext, mmlu, piqa, truthfulqa_mc1), levels ascending
    assert ("| level   | wikitext word_perplexity ↓   | mmlu acc ↑ (chance 0.25)   | "
            "piqa acc ↑ (chance 0.5)   |") in md
    assert [r["pct"] for r in records[:5]] == [0.0] * 5
    doc = json.loads((pytester.path / "xdist" / "results.json").read_text())
    assert doc["runs"][0]["workers"] == 2 and doc["runs"][0]["environment"]["python"]


def test_regression_shows_its_mark_in_table_and_summary(pytester: pytest.Pytester):
    make_suite(pytester)
    result = run_inline(pytester)
    _, md = load(pytester, "results")
    assert "| p40     | 40.00 (+100.0% ▼)            | 0.300 (-20.0 ▼) **REG**    |" in md
    assert "| 0.330 (+3.0 ▲)                       |" in md and "▲) *IMP*" not in md
    assert "- tiny-llama-maw-p40 mmlu acc,none: 0.3 vs baseline 0.3" in md
    # the skipped test's record is kept; a ratio with no paired rounds says so
    assert "#### TTFT (prefill) — conditions not recorded by the test" in md
    assert re.search(r"\| p40 +\| 16 ms +\| - +\| - +\| - +\| - +\| 1\.25x \(unpaired, no "
                     r"interval\) \| 1\.40x +\| - +\| ok +\|", md)
    result.stdout.fnmatch_lines(["*= glu-prune results =*",
                                 "tiny-llama: 15 records, 1 regression(s)",
                                 "  REG tiny-llama-maw-p40 mmlu acc,none*",
                                 "written: *results.json, *results.md"])


def test_merge_of_two_shards_equals_the_single_run(pytester: pytest.Pytester):
    make_suite(pytester)
    run_inline(pytester, "--glu-report", "all")
    run_inline(pytester, "--glu-report", "a", "-k", "p0 or p10")
    run_inline(pytester, "--glu-report", "b", "-k", "p0 or p40")  # level 0 in both shards
    out = pytester.path / "merged"
    assert main(["report", "merge", str(pytester.path / "a/results.json"),
                 str(pytester.path / "b/results.json"), "-o", str(out)]) == 0
    (merged, merged_md), (single, single_md) = load(pytester, "merged"), load(pytester, "all")
    assert measured(merged) == measured(single)
    # the same tables, but each shard is a run: the older one's cells name it
    def rows(md: str) -> list[str]:  # table rows, padding and separator lines aside
        return [re.sub(r" +", " ", line) for line in md.splitlines()
                if not re.fullmatch(r"\|[-|]+\|", line)]

    unmarked = re.sub(r" \[r1, \d+ (s|min)\]", "", tables(merged_md))
    assert rows(unmarked) == rows(tables(single_md))


def test_a_benchmark_only_run_keeps_the_accuracy_tables(pytester: pytest.Pytester):
    make_suite(pytester)
    run_inline(pytester, "-k", "quality or eval")
    _, before = load(pytester, "results")
    run_inline(pytester, "-k", "speed")  # what `--benchmark-only` selects
    records, md = load(pytester, "results")
    assert len(records) == 15 and "### Capabilities" in md and "### Performance" in md
    assert re.search(r"\| p10 \[r1, \d+ s\] +\| 25\.00 \(\+25\.0% ▼\) +\|", md)
    assert "| r2    |" in md and "`pytest -p no:cacheprovider -k speed --basetemp" in md


SKIPPER = '''
import pytest

def test_accuracy(variant, variant_id):
    if variant_id.pct == 40:
        pytest.skip(f"no baseline for {variant_id.slug} / mmlu in baselines/x.json")
    if variant_id.model == "llama-3.2-1b":
        pytest.skip("llama-3.2-1b: weights unavailable (offline)")

def test_record(glu_record, variant, variant_id):
    if variant_id.model == "tiny-llama" and variant_id.pct == 0:
        glu_record(benchmark="mmlu", metric="acc,none", kind="accuracy", value=0.5)
'''


def test_skipped_tests_say_why_and_every_selected_model_appears(fake_variants):
    pytester = fake_variants
    pytester.makepyfile(test_s=SKIPPER)
    run_inline(pytester, "--glu-models", "tiny-llama,llama-3.2-1b,llama-3.2-3b",
               "--glu-levels", "0,40", "--glu-report", "out").assert_outcomes(passed=8,
                                                                              skipped=4)
    records, md = load(pytester, "out")
    assert len(records) == 1
    assert re.findall(r"^## (.+)$", md, flags=re.M) == ["llama-3.2-1b", "llama-3.2-3b",
                                                        "tiny-llama"]
    assert "- Not run (1 test: accuracy at p0): llama-3.2-1b: weights unavailable (offline)" \
        in md
    assert "- Not run (1 test: accuracy at p40): no baseline for <variant> / mmlu" in md
    assert ("## llama-3.2-3b\n\n- Not run: no test of this model was selected in the runs "
            "above") not in md  # it was selected, and its tests ran (recording nothing)
    assert "- Not run (1 test: accuracy at p40): no baseline for <variant> / mmlu in" in md
    doc = json.loads((pytester.path / "out/results.json").read_text())
    assert doc["runs"][0]["models"] == ["tiny-llama", "llama-3.2-1b", "llama-3.2-3b"]
    assert {s["test"] for s in doc["runs"][0]["skipped"]} >= {
        "test_s.py::test_accuracy[tiny-llama-maw-p40]"}


def test_step_summary_appended(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    make_suite(pytester)
    summary = pytester.path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run_inline(pytester)
    _, md = load(pytester, "results")
    assert summary.read_text() == "earlier step\n" + md + "\n"


def test_nothing_written_without_records_and_bad_records_reported(pytester: pytest.Pytester,
                                                                  monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeconftest("")  # the plugin itself loads as an entry point
    pytester.makepyfile(test_plain="def test_a():\n    pass\n", test_bad='''
def test_bad(request):
    request.node.user_properties.append(("glu_record", {"variant": "v", "benchmark": "b"}))
''')
    result = run_inline(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*record of test_bad.py::test_bad ignored: record needs*",
                                 "no test recorded results: nothing written to *results"])
    assert not (pytester.path / "results").exists()


def test_fixture_fills_the_variant_and_validates(fake_variants: pytest.Pytester):
    pytester = fake_variants
    pytester.makepyfile(test_v='''
import pytest

def test_fill(glu_record, variant, variant_id):
    r = glu_record(benchmark="mmlu", metric="acc,none", kind="accuracy", value=0.5)
    assert (r["model"], r["variant"], r["pct"]) == (variant_id.model, variant_id.slug,
                                                    variant_id.pct)

def test_reject(glu_record):
    with pytest.raises(ValueError, match="verdict must be one of"):
        glu_record(model="tiny-llama", pct=0, benchmark="b", metric="m", value=1,
                   verdict="great")
    with pytest.raises(ValueError, match="model=, method= .default maw., pct=, round_to="):
        glu_record(variant="tiny-llama-maw-p0", benchmark="b", metric="m", value=1)
''')
    result = run_inline(pytester, "--glu-models", "tiny-llama", "--glu-levels", "0,40",
                        "--glu-report", "out")
    result.assert_outcomes(passed=3)
    records, md = load(pytester, "out")
    assert [r["variant"] for r in records] == ["tiny-llama-maw-p0", "tiny-llama-maw-p40"]
    assert re.search(r"\| p40 +\| 0\.500 \(\+0\.0\) +\|", md)


# ---------------------------------------------------------------- never silently lost or mixed

STOPPER = '''
import os


def test_stop():
    if os.environ.get("GLU_TEST_INTERRUPT"):
        raise KeyboardInterrupt


def test_after():
    pass
'''


def test_interrupted_run_says_so_with_counts_and_a_complete_run_clears_it(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    make_suite(pytester)
    pytester.makepyfile(test_zz_stop=STOPPER)  # collected after the 15 fake-suite tests
    monkeypatch.setenv("GLU_TEST_INTERRUPT", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    records, md = load(pytester, "results")
    assert len(records) == 15
    assert md.startswith("> **INCOMPLETE RUN: interrupted after 15 of 17 selected tests.**")
    doc = json.loads((pytester.path / "results/results.json").read_text())
    assert doc["complete"] is False
    assert {k: doc["runs"][0][k] for k in ("complete", "tests", "stopped")} == {
        "complete": False, "tests": {"selected": 17, "ran": 15, "failed": 1, "measured": 15},
        "stopped": "interrupted"}
    result.stdout.fnmatch_lines(["INCOMPLETE RUN: interrupted after 15 of 17 selected tests.*"])
    monkeypatch.delenv("GLU_TEST_INTERRUPT")
    run_inline(pytester).assert_outcomes(passed=13, failed=1, skipped=3)
    doc = json.loads((pytester.path / "results/results.json").read_text())
    assert doc["complete"] is True and doc["runs"][0]["tests"] == {
        "selected": 17, "ran": 17, "failed": 1, "measured": 15}  # the 2 stopper tests record none
    assert "INCOMPLETE" not in load(pytester, "results")[1]  # every record measured again
    assert not (pytester.path / "results/.glu-prune.lock").exists()


def test_exitfirst_stop_is_an_incomplete_run(pytester: pytest.Pytester):
    make_suite(pytester)
    result = run_inline(pytester, "-x")
    ran = sum(result.parseoutcomes().get(k, 0) for k in ("passed", "failed", "skipped"))
    assert ran < 15
    _, md = load(pytester, "results")
    assert md.startswith(f"> **INCOMPLETE RUN: stopped early (stopping after 1 failures) "
                         f"after {ran} of 15 selected tests.**")


def test_deselected_tests_do_not_make_a_run_incomplete(pytester: pytest.Pytester):
    make_suite(pytester)
    run_inline(pytester, "-k", "p0")
    doc = json.loads((pytester.path / "results/results.json").read_text())
    assert doc["complete"] is True and doc["runs"][0]["tests"] == {"selected": 5, "ran": 5,
                                                                   "failed": 0, "measured": 5}


def test_second_run_on_a_locked_report_folder_fails_up_front(pytester: pytest.Pytester):
    import os
    import socket

    make_suite(pytester)
    lock = pytester.path / "results" / ".glu-prune.lock"
    lock.parent.mkdir()
    holder = {"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier",
              "command": "pytest -m accuracy"}  # a live process on this host
    lock.write_text(json.dumps(holder))
    result = run_inline(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*is in use by another run (pid {os.getppid()} on "
                                 f"{socket.gethostname()}, started earlier: pytest -m "
                                 f"accuracy); lock file {lock}*"])
    assert not any(word in result.stdout.str() for word in ("passed", "failed"))  # none ran
    assert json.loads(lock.read_text()) == holder
    assert [p.name for p in lock.parent.iterdir()] == [".glu-prune.lock"]


def test_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(pytester: pytest.Pytester):
    import socket
    import subprocess
    import sys

    make_suite(pytester)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = pytester.path / "results" / ".glu-prune.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    result = run_inline(pytester)
    result.assert_outcomes(passed=11, failed=1, skipped=3)
    result.stdout.fnmatch_lines([f"WARNING took over the lock {lock} of a run that is gone "
                                 f"(pid {dead.pid} on *"])
    assert len(load(pytester, "results")[0]) == 15 and not lock.exists()


def test_report_path_that_is_a_file_fails_the_run(pytester: pytest.Pytester):
    make_suite(pytester)
    (pytester.path / "taken").write_text("a file")
    result = run_inline(pytester, "--glu-report=taken/sub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # up front: before any test ran
    result.stderr.fnmatch_lines(["ERROR: glu-prune: --glu-report=taken/sub: *"])


def test_results_that_cannot_be_written_at_the_end_fail_the_run(pytester: pytest.Pytester):
    pytester.makeconftest("")  # the plugin itself loads as an entry point
    pytester.makepyfile(test_one='''
def test_one(glu_record):
    glu_record(model="tiny-llama", pct=0, benchmark="mmlu", metric="acc,none", value=0.5)
''')
    (pytester.path / "results" / "results.json").mkdir(parents=True)  # in the way
    result = run_inline(pytester)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR writing the results to *results failed: "
                                 "*results.json*"])
