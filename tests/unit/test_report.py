"""The results table: record schema, order, cells and marks, group means, merge, plots."""

from __future__ import annotations

import dataclasses

import json
import math
import random
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from glu_prune.cli import main
from glu_prune.core.variants import VariantId
from glu_prune.results import Record, load_document, markdown, merge, write_results
from glu_prune.results.analysis import (at_chance, count_line, group_half_widths,
                                        group_means)
from glu_prune.results.format import quality_change
from glu_prune.results.perf_tables import performance_tables
from glu_prune.results.runs import stamp
from glu_prune.results.tables import capability_table, group_table

# benchmark -> (metric, kind, direction, group) as the tiny-llama registry has them
BENCH = {"wikitext": ("word_perplexity,none", "perplexity", "lower", "fragile"),
         "mmlu": ("acc,none", "accuracy", "higher", "fragile"),
         "truthfulqa_mc1": ("acc,none", "accuracy", "higher", "robust")}


def tiny(pct: float, method: str = "maw", round_to: int = 1) -> VariantId:
    return VariantId("tiny-llama", method, pct, round_to)


def rec(pct: float, bench: str, value: float, verdict: str = "ok", **kw) -> Record:
    """A quality record as the judge builds it: identity, verdict, group and direction."""
    metric, kind, direction, group = BENCH[bench]
    fields = {"baseline": value, "direction": direction, "group": group, **kw}
    return Record.of(tiny(pct), bench, metric, value, kind=kind, verdict=verdict, **fields)


def study() -> list[Record]:
    """Level 0, 10, 40: wikitext ppl 20 -> 25 -> 40, mmlu .6 -> .55 -> .40 (regression),
    truthfulqa_mc1 .6 -> .6 -> .66 (improvement); all well above chance (0.25)."""
    return [rec(0, "wikitext", 20.0), rec(0, "mmlu", 0.6), rec(0, "truthfulqa_mc1", 0.6),
            rec(10, "wikitext", 25.0), rec(10, "mmlu", 0.55), rec(10, "truthfulqa_mc1", 0.6),
            rec(40, "wikitext", 40.0), rec(40, "mmlu", 0.40, "regression"),
            rec(40, "truthfulqa_mc1", 0.66, "improvement")]


def test_record_of_takes_identity_from_the_variant_and_round_trips():
    r = Record.of(tiny(40, round_to=4), "mmlu", "acc,none", 0.3, kind="accuracy",
                  intermediate_size=308, params=12345)
    assert (r.model, r.variant, r.method, r.pct, r.round_to) == (
        "tiny-llama", "tiny-llama-maw-p40-r4", "maw", 40.0, 4)
    assert isinstance(r.pct, float) and r.verdict is None and r.extra == {}
    assert Record.from_dict(r.to_dict()) == r  # to_dict / from_dict round trip


def test_record_of_reads_the_verdict():
    verdict = SimpleNamespace(outcome="regression", baseline=0.5, baseline_stderr=0.02,
                              bound=0.45, detail="")
    r = Record.of(tiny(10), "mmlu", "acc,none", 0.41, kind="accuracy", verdict=verdict,
                  stderr=0.02, extra={"worse_by": 0.09, "cached": True})
    assert (r.value, r.stderr, r.verdict, r.baseline, r.baseline_stderr, r.bound) == \
        (0.41, 0.02, "regression", 0.5, 0.02, 0.45)
    assert r.extra == {"worse_by": 0.09, "cached": True}
    none = SimpleNamespace(outcome="no baseline", baseline=None, baseline_stderr=None,
                           bound=None, detail="no baseline for this device")
    perf = Record.of(tiny(40), "tpot", "median_s", 0.01, kind="latency", verdict=none,
                     unit="s", direction="lower", ideal=1.3)
    assert (perf.kind, perf.direction, perf.verdict, perf.ideal) == \
        ("latency", "lower", "no baseline", 1.3)
    assert perf.extra["verdict_detail"] == "no baseline for this device"


def test_record_coerces_numpy_scalars():
    np = pytest.importorskip("numpy")
    r = Record.of(tiny(np.float64(40)), "mmlu", "acc,none", np.float32(0.5), kind="accuracy",
                  n=np.int64(150))
    assert type(r.value) is float and type(r.n) is int and type(r.pct) is float


@pytest.mark.parametrize("alias", [{"measured": 0.41}, {"outcome": "ok"},
                                   {"ideal_speedup": 1.3}, {"slug": "tiny-llama-maw-p0"}])
def test_from_dict_refuses_aliases_and_unknown_keys(alias):
    data = {**Record.of(tiny(0), "mmlu", "acc,none", 0.5, kind="accuracy").to_dict(), **alias}
    with pytest.raises(ValueError, match="unknown keys") as exc:
        Record.from_dict(data)
    assert repr(next(iter(alias))) in str(exc.value)


def test_from_dict_does_not_parse_slugs():
    with pytest.raises(ValueError, match=r"missing \['model'\]"):
        Record.from_dict({"variant": "tiny-llama-maw-p10", "benchmark": "mmlu",
                          "metric": "acc,none", "value": 0.5})


X = {"model": "x", "variant": "x-maw-p1", "benchmark": "b", "metric": "m"}


@pytest.mark.parametrize("bad, says", [
    (X, "missing ['value']"),
    ({**X, "value": "high"}, "'high'"),
    ({**X, "value": 1, "verdict": "meh"}, "'meh'"),
    ({**X, "value": 1, "direction": "up"}, "'up'"),
    ({**X, "value": 1, "kind": "speed"}, "'speed'"),
])
def test_bad_record_names_the_value(bad, says):
    with pytest.raises(ValueError, match="record") as exc:
        Record.from_dict(bad)
    assert says in str(exc.value)


def test_capability_cells_changes_and_marks():
    headers, rows = capability_table(study())
    # registry order; each header names metric, direction and, for choice tasks, chance
    assert headers == ["level", "wikitext word_perplexity ↓", "mmlu acc ↑ (chance 0.25)",
                       "truthfulqa_mc1 acc ↑ (chance 0.25)"]
    assert rows[0] == ["p0", "20.00", "0.600", "0.600"]
    # worse reads the same in every column: ▼ for +25 % perplexity and for -5 points
    assert rows[1] == ["p10", "25.00 (+25.0% ▼)", "0.550 (-5.0 ▼)", "0.600 (+0.0)"]
    assert rows[2] == ["p40", "40.00 (+100.0% ▼)", "0.400 (-20.0 ▼) **REG**",
                       "0.660 (+6.0 ▲) *IMP*"]


def test_lower_perplexity_is_better_and_marked_so():
    cells = capability_table([rec(0, "wikitext", 20.0), rec(10, "wikitext", 18.0)])[1]
    assert cells[1] == ["p10", "18.00 (-10.0% ▲)"]


def chance_study() -> list[Record]:
    """mmlu at chance at level 0 (0.26, stderr 0.02): its wobble is noise; truthfulqa
    collapses from 0.6 to chance at p40: a real change, shown, and marked at chance."""
    return [rec(0, "mmlu", 0.26, stderr=0.02), rec(10, "mmlu", 0.29, stderr=0.02),
            rec(40, "mmlu", 0.22, stderr=0.02), rec(0, "truthfulqa_mc1", 0.6, stderr=0.02),
            rec(10, "truthfulqa_mc1", 0.58, stderr=0.02),
            rec(40, "truthfulqa_mc1", 0.27, stderr=0.02)]


def test_benchmarks_at_chance_are_marked_and_their_noise_is_not_a_change():
    r = chance_study()
    assert [at_chance(x) for x in r] == [True, True, True, False, False, True]
    assert not at_chance(rec(0, "mmlu", 0.30, stderr=0.02))  # 2.5 standard errors above
    assert not at_chance(rec(0, "wikitext", 1.0))  # perplexity has no chance level
    assert capability_table([rec(0, "mmlu", 0.6), rec(40, "mmlu", 0.1, stderr=0.02)]
                            )[1][1] == ["p40", "0.100 (-50.0 ▼) below chance"]
    rows = capability_table(r)[1]
    assert [row[1] for row in rows] == ["0.260 at chance", "0.290 at chance",
                                        "0.220 at chance"]
    assert rows[2][2] == "0.270 (-33.0 ▼) at chance"
    # group means leave the at-chance benchmark out, and results.md says so
    assert group_means(r)[(10.0, "maw", 1)] == {"robust": pytest.approx(0.58 / 0.6 - 1),
                                                "all": pytest.approx(0.58 / 0.6 - 1)}
    assert "Left out of the means (at chance at level 0): mmlu." in markdown(r)


def test_chance_uses_the_binomial_error_when_a_record_has_none():
    # the tiny mmlu twin has 500 items: 2 * sqrt(.25 * .75 / 500) = 0.039 above 0.25
    assert at_chance(rec(0, "mmlu", 0.288)) and not at_chance(rec(0, "mmlu", 0.29))


def test_record_counts_say_what_they_mean():
    line = count_line(study() + [Record.of(tiny(0), "ttft@128", "p90_s", 0.1, kind="latency",
                                           unit="s", direction="lower")])
    assert line == ("10 records: 1 improvement, 1 not judged (shown only), 7 ok (within "
                    "tolerance), 1 regression.")
    assert "*no baseline* =\n  nothing stored to compare with" in markdown(study())


def test_further_metrics_get_their_own_table():
    def acc(bench: str, metric: str, value: float) -> Record:
        return Record.of(tiny(0), bench, metric, value, kind="accuracy", direction="higher")
    records = [acc("gsm8k", "exact_match,flexible-extract", 0.2),
               acc("gsm8k", "exact_match,strict-match", 0.1),
               acc("arc_challenge", "acc,none", 0.3), acc("arc_challenge", "acc_norm,none", 0.4)]
    assert capability_table(records) == (  # each benchmark's declared first metric
        ["level", "arc_challenge acc_norm ↑ (chance 0.25)", "gsm8k strict-match ↑"],
        [["p0", "0.400", "0.100"]])
    text = markdown(records)
    assert "| level   | arc_challenge acc ↑ (chance 0.25)   | gsm8k flexible-extract ↑   |" \
        in text


def test_without_level_zero_changes_are_vs_baseline():
    records = [rec(40, "mmlu", 0.50, baseline=0.55)]
    assert capability_table(records)[1] == [["p40", "0.500 (~-5.0 ▼)"]]


def test_group_means():
    means = group_means(study())
    # fragile at p10: wikitext 20/25-1 = -0.2, mmlu .55/.6-1 = -1/12; robust 0
    assert means[(10.0, "maw", 1)]["fragile"] == pytest.approx((-0.2 - 1 / 12) / 2)
    assert means[(10.0, "maw", 1)]["robust"] == pytest.approx(0.0)
    assert means[(40.0, "maw", 1)]["robust"] == pytest.approx(0.1)
    assert (0.0, "maw", 1) not in means


def test_group_means_carry_a_95_percent_interval_from_the_standard_errors():
    records = [rec(0, "mmlu", 0.6, stderr=0.02), rec(0, "truthfulqa_mc1", 0.5, stderr=0.03),
               rec(40, "mmlu", 0.3, stderr=0.02), rec(40, "truthfulqa_mc1", 0.5, stderr=0.03),
               rec(0, "wikitext", 20.0), rec(40, "wikitext", 40.0)]
    # delta method: se of v/r - 1 = hypot(se_v / r, v * se_r / r^2)
    mmlu = math.hypot(0.02 / 0.6, 0.3 * 0.02 / 0.36)
    tqa = math.hypot(0.03 / 0.5, 0.5 * 0.03 / 0.25)
    half = group_half_widths(records)[(40.0, "maw", 1)]
    assert half["robust"] == pytest.approx(1.96 * tqa)  # truthfulqa alone
    # fragile: mmlu and wikitext (no stderr: exact), a mean of two
    assert half["fragile"] == pytest.approx(1.96 * mmlu / 2)
    assert half["all"] == pytest.approx(1.96 * math.hypot(mmlu, tqa) / 3)
    row = group_table(records)[1][0]
    assert row[1] == f"{100 * ((0.3 / 0.6 - 1) + (20 / 40 - 1)) / 2:+.1f}% ±{196 * mmlu / 2:.1f}"
    assert group_half_widths(study()) == {}  # no standard errors at all: no interval
    assert "`±` = half-width of its 95 % interval" in markdown(records)


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
    assert "- tiny-llama-maw-p40 mmlu acc,none: 0.4" in text
    assert "### Performance" not in text and "### Methods" not in text


def llama(pct: float, round_to: int = 1) -> VariantId:
    return VariantId("llama-3.2-1b", "maw", pct, round_to)


def speed(pct: float, value: float, round_to: int = 1, **extra) -> Record:
    """A TTFT record as the latency suite writes it: conditions, spread, paired speedup."""
    return Record.of(llama(pct, round_to), "ttft@128", "ttft_median_s", value, kind="latency",
                     unit="s", direction="lower", verdict="no baseline",
                     ideal=1.48 if pct else 1.0, extra={
                         "weights": "random", "layers": 2, "full_layers": 16,
                         "dtype": "float32", "device": "Some CPU (2 cores)", "threads": 2,
                         "prompt_len": 128, "batch": 1, "q1": value * 0.9, "q3": value * 1.2,
                         "rounds": 9, "outliers": 1, **extra})


def paired(speedup: float, low: float | None, high: float | None,
           pair: tuple[float, float] | None = None) -> dict:
    significant = low is not None and (low > 1 or high < 1)
    medians = {} if pair is None else {"pair_reference": pair[0], "pair_variant": pair[1]}
    return {"speedup": speedup, "speedup_low": low, "speedup_high": high,
            "speedup_rounds": 9, "speedup_paired": True, "speedup_significant": significant,
            "efficiency": speedup / 1.48, **medians}


def test_performance_table_says_its_conditions_spread_and_speedup_interval():
    records = [speed(0, 0.02), speed(40, 0.016, **paired(1.25, 1.10, 1.41, (0.0201, 0.016))),
               speed(10, 0.019, **paired(1.05, 0.92, 1.31)),
               Record.of(llama(40), "ttft@128", "ttft_p90_s", 0.03, kind="latency", unit="s",
                         direction="lower")]
    [(conditions, (headers, rows))] = performance_tables(records)
    assert conditions == ("TTFT: prefill of 128 tokens at batch 1 — random weights, 2 of 16 "
                          "layers (the parameter counts above are of all 16 layers), "
                          "float32, Some CPU (2 cores), 2 threads")
    assert headers == ["level", "TTFT median ↓", "q1-q3", "rounds", "outliers",
                       "paired medians p0 → this", "speedup vs p0 [95 % CI]", "ideal",
                       "measured / ideal", "vs baseline"]
    assert rows == [  # the unjudged p90 stays in the JSON only
        ["p0", "20 ms", "18 ms-24 ms", "9", "1", "-", "reference", "-", "-", "no baseline"],
        ["p10", "19 ms", "17.1 ms-22.8 ms", "9", "1", "-", "**n.s.** [0.92-1.31]", "1.48x",
         "-", "no baseline"],
        ["p40", "16 ms", "14.4 ms-19.2 ms", "9", "1", "20.1 ms → 16 ms", "1.25x [1.10-1.41]",
         "1.48x", "0.84", "no baseline"]]
    text = markdown(records)
    assert "#### TTFT: prefill of 128 tokens at batch 1 — random weights, 2 of 16" in text
    assert "**n.s.** = the interval contains 1" in text


def test_speedup_without_an_interval_is_never_a_bare_number():
    few = speed(40, 0.016, **{**paired(1.25, None, None), "speedup_rounds": 3})
    other = Record.of(llama(40), "ttft@128", "ttft_median_s", 0.016, kind="latency",
                      unit="s", direction="lower",
                      verdict="ok")  # another producer: no speedup recorded
    cells = [row[6] for _, (_, rows) in performance_tables([speed(0, 0.02), few])
             for row in rows]
    assert cells == ["reference", "**n.s.** (3 rounds: too few for an interval)"]
    unpaired = performance_tables([speed(0, 0.02), other])[0][1][1][1]
    assert unpaired[6] == "1.25x (unpaired, no interval)"


def test_full_depth_and_lone_blocks_say_so():
    whole = [speed(0, 0.02, layers=16), speed(40, 0.016, layers=16)]
    assert ", all 16 layers, float32" in performance_tables(whole)[0][0]
    block = [replace(speed(p, v, prompt_len=512, layers=1, full_layers=1),
                     benchmark="mlp@T512", metric="mlp_median_s")
             for p, v in ((0, 0.5), (10, 0.45))]
    assert performance_tables(block)[0][0].startswith(
        "Lone GLU MLP block: 512 tokens — random weights, one block, no model around it")


def test_method_comparison_table_when_several_methods():
    records = study() + [replace(r, variant=tiny(r.pct, "l2").slug, method="l2",
                                 value=r.value * 0.9) for r in study() if r.pct]
    text = markdown(records)
    assert "### Methods" in text and "l2 (fragile / robust)" in text
    assert "| p40 l2 " in text


def run_at(run_id: str, started: str) -> dict:
    return {"id": run_id, "started": started, "finished": started, "args": ["-k", run_id],
            "environment": {"device": "cpu", "python": "3"}}


def test_write_and_merge_shards(tmp_path, capsys):
    records = study()
    a, b = run_at("A", "2025-01-01T10:00:00+00:00"), run_at("B", "2025-01-01T11:00:00+00:00")
    write_results(stamp(records, "A"), tmp_path / "all", [a])
    write_results(stamp([r for r in records if r.pct != 40], "A"), tmp_path / "a", [a])
    write_results(stamp([r for r in records if r.pct != 10], "B"), tmp_path / "b", [b])
    assert main(["report", "merge", str(tmp_path / "a/results.json"),
                 str(tmp_path / "b/results.json"), "-o", str(tmp_path / "m")]) == 0
    assert "merged 9 records from 2 files" in capsys.readouterr().out
    merged, runs = load_document(tmp_path / "m/results.json")
    values = [(r.identity, r.value, r.verdict) for r in merged]
    assert values == [(r.identity, r.value, r.verdict)
                      for r in load_document(tmp_path / "all/results.json")[0]]
    assert [r["source"] for r in runs] == [str(tmp_path / "a/results.json"),
                                           str(tmp_path / "b/results.json")]
    md = (tmp_path / "m/results.md").read_text()
    # each shard is a run of its own: the older one's records say so, with their age
    assert "| r1    | 2025-01-01T10:00:00+00:00 | 1 h    |" in md
    assert re.search(r"\| p10 \[r1, 1 h\] +\| 25\.00 \(\+25\.0% ▼\) +\|", md)
    assert re.search(r"\| p40 +\| 40\.00 \(\+100\.0% ▼\) +\|", md)  # newest: unmarked


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
    from glu_prune.results.plots import write_plots

    perf = [speed(0, 0.02), speed(40, 0.016, **paired(1.25, 1.1, 1.4))]
    paths = write_plots(study() + perf, tmp_path)
    assert sorted(p.name for p in paths) == ["llama-3.2-1b-performance.png",
                                             "tiny-llama-capabilities.png",
                                             "tiny-llama-groups.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def tiny_world(levels=((0, 1), (40, 1), (40, 64))) -> list[Record]:
    """Every tiny benchmark's metrics at each level, well above chance."""
    from glu_prune.catalog.benchmarks import benchmarks_for

    out = []
    for i, b in enumerate(benchmarks_for("tiny-llama")):
        for m in b.metrics:
            for pct, rt in levels:
                value = (5.0 + pct / 10 if m.kind == "perplexity"
                         else 0.95 - pct / 400 - i / 100)
                out.append(Record.of(tiny(pct, round_to=rt), b.name, m.key, value,
                                     kind=m.kind, direction=m.direction, group=b.group))
    return out


def methods_world(methods=("maw", "flap", "wanda_sp")) -> list[Record]:
    """tiny_world's records at level 0 and at 40 % by each method."""
    base = tiny_world(levels=((0, 1),))
    pruned = [dataclasses.replace(r, method=m, variant=tiny(40, m).slug, pct=40.0,
                                  value=r.value * (0.9 - i / 20))
              for i, m in enumerate(methods) for r in tiny_world(levels=((40, 1),))]
    return base + pruned


def test_several_methods_get_one_capability_panel_each():
    pytest.importorskip("matplotlib")
    from glu_prune.results.plots import capability_figure

    fig = capability_figure("tiny-llama", methods_world())
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["flap", "maw", "wanda_sp"]
    for ax in shown:  # every benchmark in every panel, one colour each, the same in all
        assert len({line.get_color() for line in ax.get_lines()[:-1]}) == 13
    colours = [[line.get_color() for line in ax.get_lines()] for ax in shown]
    assert colours[0] == colours[1] == colours[2]


def test_several_methods_keep_one_colour_per_method_in_the_group_chart():
    pytest.importorskip("matplotlib")
    from glu_prune.results.plots import group_figure

    lines = labelled(group_figure("tiny-llama", methods_world()).axes[0])
    by_method: dict[str, set] = {}
    for line in lines:
        group, method = line.get_label().split(" ", 1)
        by_method.setdefault(method, set()).add((line.get_color(), line.get_marker()))
        assert line.get_linestyle() == ("-" if group == "fragile" else "--")
    assert sorted(by_method) == ["flap", "maw", "wanda_sp"]
    assert all(len(looks) == 1 for looks in by_method.values())  # fragile, robust alike
    assert len({next(iter(v)) for v in by_method.values()}) == 3


def labelled(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_capability_chart_tells_every_benchmark_and_the_rounded_variant_apart():
    pytest.importorskip("matplotlib")
    from glu_prune.results.plots import capability_figure

    ax = capability_figure("tiny-llama", tiny_world()).axes[0]
    exact = labelled(ax)
    assert len(exact) == 13  # one legend entry per benchmark
    assert len({(line.get_color(), line.get_marker()) for line in exact}) == 13
    assert len({line.get_color() for line in exact}) == 13  # colour alone tells them apart
    rounded = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert len(rounded) == 13 and {tuple(line.get_xdata()) for line in rounded} == {(2.5,)}
    assert "hollow, dotted: rounded to 64" in [t.get_text() for t in ax.get_legend().texts]


def test_group_chart_puts_rounded_variants_at_the_share_they_remove():
    pytest.importorskip("matplotlib")
    from glu_prune.results.plots import group_figure

    ax = group_figure("tiny-llama", tiny_world()).axes[0]
    names = {line.get_label(): line for line in labelled(ax)}
    assert set(names) == {"fragile", "robust", "fragile rounded to 64",
                          "robust rounded to 64"}
    assert list(names["fragile"].get_xdata()) == [0.0, pytest.approx(100 * 204 / 512)]
    assert list(names["fragile rounded to 64"].get_xdata()) == [37.5]  # 320 of 512 kept


def test_every_speed_panel_has_error_bars_and_the_ideal_line():
    pytest.importorskip("matplotlib")
    from glu_prune.results.plots import performance_figure

    records = [speed(0, 0.02), speed(40, 0.016, **paired(1.25, 1.1, 1.4)),
               speed(40, 0.017, **paired(1.18, 0.9, 1.3), round_to=128)]
    records += [replace(r, benchmark="tpot", metric="tpot_s",
                        extra={**r.extra, "prompt_len": 32, "new_tokens": 4}) for r in records]
    fig = performance_figure("llama-3.2-1b", records)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["ttft@128", "tpot"]
    for ax in panels:
        assert {line.get_label() for line in labelled(ax)} == {"ideal", "ideal rounded to 128"}
        # error bars of the exact and the rounded series, each its own legend entry
        assert [c.get_label() for c in ax.containers] == ["measured", "measured rounded to 128"]
    measured = next(c for c in panels[0].containers if c.get_label() == "measured")
    assert list(measured.lines[0].get_ydata()) == [1.0, 1.25]
    assert "2 of 16 layers" in fig.get_suptitle() and "above" not in fig.get_suptitle()


def test_report_check_lists_regressions_first_and_fails(tmp_path, capsys):
    run = {"environment": {}}
    write_results(study(), tmp_path / "r", [run])
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert main(["report", "check", str(tmp_path / "r/results.json"),
                 "--summary", str(summary)]) == 1
    text = summary.read_text().splitlines()
    assert text[:4] == ["earlier step", "**1 regression(s) flagged**", "",
                        "- tiny-llama-maw-p40 mmlu acc,none: 0.4 vs baseline 0.4"]
    assert "## tiny-llama" in summary.read_text()  # then the tables
    assert "1 regression(s) flagged" in capsys.readouterr().out


def test_report_check_passes_without_regressions(tmp_path):
    write_results([r for r in study() if r.verdict != "regression"], tmp_path / "r",
                  [{"environment": {}}])
    assert main(["report", "check", str(tmp_path / "r/results.json")]) == 0


def test_judging_and_results_name_the_same_outcomes_and_kinds():
    """judging (which may not import results) keeps its own copy: a new outcome there
    without a results verdict would make Record.of raise mid-run."""
    from glu_prune.judging import verdict
    from glu_prune.results import record

    assert verdict.OUTCOMES == record.VERDICTS
    assert (verdict.QUALITY_KINDS, verdict.SPEED_KINDS) == (record.QUALITY_KINDS,
                                                            record.SPEED_KINDS)


_NUMBER = re.compile(r"([0-9.]+) (ms|s|tok/s)")
_SCALE = {"ms": 1e-3, "s": 1.0, "tok/s": 1.0}


def _shown(cell: str) -> float:
    number, unit = _NUMBER.fullmatch(cell.strip()).groups()
    return float(number) * _SCALE[unit]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("unit", ["s", "tok/s"])
def test_speed_row_adds_up_speedup_is_the_ratio_of_its_shown_paired_medians(seed, unit):
    """A row's speedup and interval agree with the two medians shown beside it: the ratio
    of those medians, as printed, lies in the printed interval (up to its rounding)."""
    from glu_prune.performance.stats import Speedup

    rng = random.Random(seed)
    drift = [1 + 0.3 * rng.random() for _ in range(9)]  # both slowed alike round by round
    ref = [0.020 * d * rng.uniform(0.95, 1.05) for d in drift]
    var = [0.016 * d * rng.uniform(0.95, 1.05) for d in drift]
    scale = (lambda t: t) if unit == "s" else (lambda t: 64 / t)
    fields = Speedup.of_rounds(ref, var).fields(scale)
    value = fields["pair_variant"]
    rec = dataclasses.replace(speed(40, value, **fields, efficiency=None), unit=unit,
                              direction="lower" if unit == "s" else "higher")
    [(_, (headers, [row]))] = performance_tables([rec])
    pair = row[headers.index("paired medians p0 → this")]
    p0, this = (_shown(c) for c in pair.split("→"))
    low, high = map(float, re.search(r"\[([0-9.]+)-([0-9.]+)\]",
                                     row[headers.index("speedup vs p0 [95 % CI]")]).groups())
    ratio = p0 / this if unit == "s" else this / p0
    assert low - 0.005 <= ratio <= high + 0.005, (pair, row)
