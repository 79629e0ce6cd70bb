"""The results table: record schema, order, cells and marks, group means, merge, plots."""

from __future__ import annotations

import json
import random

import pytest

from glu_prune.cli import main
from glu_prune.report import (capability_table, group_means, markdown, performance_table,
                              quality_change, write_results)
from glu_prune.report_io import Record, load_document, merge, parse_slug

BENCH = {"wikitext": ("word_perplexity,none", "perplexity"), "mmlu": ("acc,none", "accuracy"),
         "truthfulqa_mc1": ("acc,none", "accuracy")}


def rec(pct: float, bench: str, value: float, verdict: str = "ok", **kw) -> Record:
    metric, kind = BENCH[bench]
    return Record.from_dict({"variant": f"tiny-llama-maw-p{pct:g}", "benchmark": bench,
                             "metric": metric, "value": value, "kind": kind,
                             "verdict": verdict, "baseline": value, **kw})


def study() -> list[Record]:
    """Level 0, 10, 40: wikitext ppl 20 -> 25 -> 40, mmlu .5 -> .45 -> .30 (regression)."""
    return [rec(0, "wikitext", 20.0), rec(0, "mmlu", 0.5), rec(0, "truthfulqa_mc1", 0.3),
            rec(10, "wikitext", 25.0), rec(10, "mmlu", 0.45), rec(10, "truthfulqa_mc1", 0.3),
            rec(40, "wikitext", 40.0), rec(40, "mmlu", 0.30, "regression"),
            rec(40, "truthfulqa_mc1", 0.33, "improvement")]


def test_record_fills_identity_group_direction_and_architecture():
    r = rec(40, "mmlu", 0.3)
    assert (r.model, r.method, r.pct, r.round_to) == ("tiny-llama", "maw", 40.0, 1)
    assert (r.group, r.direction, r.intermediate_size) == ("fragile", "higher", 308)
    assert r.expansion_ratio == pytest.approx(308 / 128) and r.params > 0
    assert Record.from_dict(r.to_dict()) == r  # to_dict / from_dict round trip


def test_record_reads_eval_and_perf_shapes():
    ev = Record.from_dict({"model": "tiny-llama", "variant": "tiny-llama-maw-p10-r4",
                           "benchmark": "mmlu", "metric": "acc,none", "kind": "accuracy",
                           "measured": 0.41, "measured_stderr": 0.02, "outcome": "regressed",
                           "worse_by": 0.1, "cached": True})
    assert (ev.value, ev.stderr, ev.verdict, ev.round_to) == (0.41, 0.02, "regression", 4)
    assert ev.extra == {"worse_by": 0.1, "cached": True}
    perf = Record.from_dict({"variant": "tiny-llama-maw-p40", "benchmark": "tpot",
                             "metric": "median_s", "value": 0.01, "unit": "s",
                             "verdict": "no baseline for this device", "ideal_speedup": 1.3})
    assert (perf.kind, perf.direction, perf.verdict, perf.ideal) == \
        ("latency", "lower", "no baseline", 1.3)
    assert perf.extra["verdict_detail"] == "no baseline for this device"


@pytest.mark.parametrize("bad, says", [
    ({"variant": "x-maw-p1", "benchmark": "b", "metric": "m"}, "missing ['value']"),
    ({"variant": "x-maw-p1", "benchmark": "b", "metric": "m", "value": "high"}, "'high'"),
    ({"variant": "x-maw-p1", "benchmark": "b", "metric": "m", "value": 1, "verdict": "meh"},
     "'meh'"),
    ({"variant": "x-maw-p1", "benchmark": "b", "metric": "m", "value": 1,
      "direction": "up"}, "'up'"),
])
def test_bad_record_names_the_value(bad, says):
    with pytest.raises(ValueError, match="record") as exc:
        Record.from_dict(bad)
    assert says in str(exc.value)


def test_parse_slug():
    assert parse_slug("llama-3.2-1b-instruct-vow-p12_5-r128") == {
        "model": "llama-3.2-1b-instruct", "method": "vow", "pct": 12.5, "round_to": 128}
    assert parse_slug("not a slug") == {}


def test_capability_cells_changes_and_marks():
    headers, rows = capability_table(study())
    assert headers == ["level", "wikitext", "mmlu", "truthfulqa_mc1"]  # registry order
    assert rows[0] == ["p0", "20.00", "0.500", "0.300"]
    assert rows[1] == ["p10", "25.00 (+25.0%)", "0.450 (-5.0)", "0.300 (+0.0)"]
    assert rows[2] == ["p40", "40.00 (+100.0%)", "0.300 (-20.0) **REG**", "0.330 (+3.0) *IMP*"]


def test_further_metrics_get_their_own_table():
    def acc(bench: str, metric: str, value: float) -> Record:
        return Record.from_dict({"variant": "tiny-llama-maw-p0", "benchmark": bench,
                                 "metric": metric, "value": value, "kind": "accuracy"})
    records = [acc("gsm8k", "exact_match,flexible-extract", 0.2),
               acc("gsm8k", "exact_match,strict-match", 0.1),
               acc("arc_challenge", "acc,none", 0.3), acc("arc_challenge", "acc_norm,none", 0.4)]
    assert capability_table(records) == (["level", "arc_challenge", "gsm8k"],
                                         [["p0", "0.400", "0.100"]])  # declared first metrics
    text = markdown(records)
    assert "| level   | arc_challenge acc   | gsm8k flexible-extract   |" in text


def test_without_level_zero_changes_are_vs_baseline():
    records = [rec(40, "mmlu", 0.30, baseline=0.35)]
    assert capability_table(records)[1] == [["p40", "0.300 (~-5.0)"]]


def test_group_means():
    means = group_means(study())
    # fragile at p10: wikitext 20/25-1 = -0.2, mmlu .45/.5-1 = -0.1 -> -0.15; robust 0
    assert means[(10.0, "maw", 1)]["fragile"] == pytest.approx(-0.15)
    assert means[(10.0, "maw", 1)]["robust"] == pytest.approx(0.0)
    assert means[(40.0, "maw", 1)]["robust"] == pytest.approx(0.1)
    assert (0.0, "maw", 1) not in means


def test_quality_change():
    assert quality_change(0.0, 0.25, "higher") == -1.0  # a benchmark wiped out counts fully
    assert quality_change(40.0, 20.0, "lower") == -0.5  # perplexity doubled: half the quality
    assert quality_change(0.3, 0.0, "higher") is None


def test_markdown_is_independent_of_record_order():
    records = study()
    text = markdown(records, "hdr")
    random.Random(1).shuffle(records)
    assert markdown(records, "hdr") == text
    assert text.index("### Architecture") < text.index("### Capabilities") \
        < text.index("### Groups")
    assert "| p40     | 39.8       | 2.406" in text  # 308 of 512 neurons kept
    assert "- tiny-llama-maw-p40 mmlu acc,none: 0.3" in text
    assert "### Performance" not in text and "### Methods" not in text


def test_performance_table_speedups():
    perf = [Record.from_dict({"variant": f"tiny-llama-maw-p{p}", "benchmark": "ttft@128",
                              "metric": "median_s", "value": v, "unit": "s", "verdict": "ok",
                              "ideal_speedup": ideal})
            for p, v, ideal in ((0, 0.02, 1.0), (40, 0.016, 1.5))]
    extra = Record.from_dict({"variant": "tiny-llama-maw-p40", "benchmark": "ttft@128",
                              "metric": "iqr_s", "value": 0.001, "unit": "s"})
    headers, rows = performance_table(perf + [extra])
    assert headers == ["level", "ttft@128"]  # the unjudged spread stays in the JSON only
    assert rows == [["p0", "20 ms"], ["p40", "16 ms (-20.0%) 1.25x/1.50x"]]


def test_method_comparison_table_when_several_methods():
    records = study() + [Record.from_dict({**r.to_dict(), "variant": r.variant.replace(
        "maw", "l2"), "method": "l2", "value": r.value * 0.9, "intermediate_size": None})
        for r in study() if r.pct]
    text = markdown(records)
    assert "### Methods" in text and "l2 (fragile / robust)" in text
    assert "| p40 l2 " in text


def test_write_and_merge_shards(tmp_path, monkeypatch, capsys):
    records = study()
    run = {"environment": {"device": "cpu", "python": "3"}}
    write_results(records, tmp_path / "all", [run])
    write_results([r for r in records if r.pct != 40], tmp_path / "a", [run])
    write_results([r for r in records if r.pct != 10], tmp_path / "b", [run])  # p0 in both
    assert main(["report", "merge", str(tmp_path / "a/results.json"),
                 str(tmp_path / "b/results.json"), "-o", str(tmp_path / "m")]) == 0
    assert "merged 9 records from 2 files" in capsys.readouterr().out
    assert (tmp_path / "m/results.md").read_text() == (tmp_path / "all/results.md").read_text()
    merged, runs = load_document(tmp_path / "m/results.json")
    assert merged == load_document(tmp_path / "all/results.json")[0]
    assert [r["source"] for r in runs] == [str(tmp_path / "a/results.json"),
                                           str(tmp_path / "b/results.json")]


def test_merge_conflict_names_records_and_files(tmp_path, capsys):
    run = {"environment": {}}
    write_results([rec(0, "mmlu", 0.5)], tmp_path / "a", [run])
    write_results([rec(0, "mmlu", 0.6)], tmp_path / "b", [run])
    a, b = str(tmp_path / "a/results.json"), str(tmp_path / "b/results.json")
    with pytest.raises(ValueError, match="1 conflicting duplicate") as exc:
        merge([a, b])
    assert f"tiny-llama / tiny-llama-maw-p0 / accuracy / mmlu / acc,none: 0.5 from {a} vs " \
           f"0.6 from {b}" in str(exc.value)
    assert main(["report", "merge", a, b, "-o", str(tmp_path / "m")]) == 2
    assert "conflicting" in capsys.readouterr().err


def test_merge_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match=f"{path}: not a glu-prune results file"):
        merge([path])


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    from glu_prune.plots import write_plots

    perf = [Record.from_dict({"variant": f"tiny-llama-maw-p{p}", "benchmark": "tpot",
                              "metric": "median_s", "value": v, "unit": "s", "verdict": "ok",
                              "ideal_speedup": 1 + p / 100}) for p, v in ((0, 0.01), (40, 0.008))]
    paths = write_plots(study() + perf, tmp_path)
    assert sorted(p.name for p in paths) == ["tiny-llama-capabilities.png",
                                             "tiny-llama-groups.png",
                                             "tiny-llama-performance.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_report_check_lists_regressions_first_and_fails(tmp_path, capsys):
    run = {"environment": {}}
    write_results(study(), tmp_path / "r", [run])
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert main(["report", "check", str(tmp_path / "r/results.json"),
                 "--summary", str(summary)]) == 1
    text = summary.read_text().splitlines()
    assert text[:4] == ["earlier step", "**1 regression(s) flagged**", "",
                        "- tiny-llama-maw-p40 mmlu acc,none: 0.3 vs baseline 0.3"]
    assert "## tiny-llama" in summary.read_text()  # then the tables
    assert "1 regression(s) flagged" in capsys.readouterr().out


def test_report_check_passes_without_regressions(tmp_path):
    write_results([r for r in study() if r.verdict != "regression"], tmp_path / "r",
                  [{"environment": {}}])
    assert main(["report", "check", str(tmp_path / "r/results.json")]) == 0
