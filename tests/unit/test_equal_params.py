"""results.md's "Width vs depth at equal parameters" section and the shapes chart, from
records of every shape (built the way the suite builds them: Record.of a VariantId)."""

from __future__ import annotations

import pytest

from glu_prune.core.variants import VariantId
from glu_prune.results import Record, markdown, write_results
from glu_prune.results.equal_params import TITLE, blocks, quality_table, speed_table

M = "tiny-llama"
BASE = VariantId(M, "maw", 0)
WIDTH = VariantId(M, "maw", 40)
GLOBAL = VariantId(M, "maw", 40, shape="global")
BI1 = VariantId(M, "bi", 0, calibration="c-x", shape="depth", layers=1)
BI2 = VariantId(M, "bi", 0, calibration="c-x", shape="depth", layers=2)
LAST1 = VariantId(M, "last", 0, shape="depth", layers=1)
PARAMS = {BASE: 1_148_032, WIDTH: 834_688, GLOBAL: 834_688, BI1: 902_016, BI2: 656_000,
          LAST1: 902_016}
LAYERS = {BI1: [2], BI2: [1, 2], LAST1: [3]}
# (mmlu acc, piqa acc, truthfulqa_mc1 acc, wikitext word perplexity) per variant
QUALITY = {BASE: (0.60, 0.70, 0.50, 20.0), WIDTH: (0.50, 0.66, 0.50, 30.0),
           GLOBAL: (0.54, 0.68, 0.45, 26.0), BI1: (0.45, 0.69, 0.55, 24.0),
           BI2: (0.30, 0.60, 0.40, 60.0), LAST1: (0.40, 0.65, 0.50, 35.0)}
BENCHES = (("mmlu", "acc,none", "accuracy", "higher", "fragile"),
           ("piqa", "acc,none", "accuracy", "higher", "fragile"),
           ("truthfulqa_mc1", "acc,none", "accuracy", "higher", "robust"),
           ("wikitext", "word_perplexity,none", "perplexity", "lower", "fragile"))


def _extra(v: VariantId) -> dict:
    if v.shape != "depth":
        return {}
    return {"removed_layers": LAYERS[v], "layers_before": 4, "layers_after": 4 - v.layers}


def quality_records() -> list[Record]:
    return [Record.of(v, bench, metric, values[i], kind=kind, direction=direction,
                      group=group, stderr=0.01, n=1000, params=PARAMS[v], extra=_extra(v))
            for v, values in QUALITY.items()
            for i, (bench, metric, kind, direction, group) in enumerate(BENCHES)]


def speed_records() -> list[Record]:
    """TPOT of level 0, width p40 (ideal 1.30) and bi d1; TTFT of level 0 and width only."""
    out = []
    for v, speed, ideal in ((BASE, None, None), (WIDTH, 1.20, 1.30), (BI1, 1.25, None)):
        extra = {"speedup": speed, "speedup_low": speed and speed - 0.05,
                 "speedup_high": speed and speed + 0.05, "speedup_paired": True,
                 "speedup_significant": True, **_extra(v)}
        out.append(Record.of(v, "tpot@b1", "median_s", 0.010 / (speed or 1), kind="latency",
                             unit="s", direction="lower", ideal=ideal, extra=extra))
    for v, speed in ((BASE, None), (WIDTH, 1.10)):
        out.append(Record.of(v, "ttft@p128", "median_s", 0.05 / (speed or 1), kind="latency",
                             unit="s", direction="lower", ideal=speed and 1.35,
                             extra={"speedup": speed, "speedup_paired": True,
                                    "speedup_significant": bool(speed),
                                    "speedup_low": speed, "speedup_high": speed}))
    return out


def test_depth_variants_join_the_level_whose_parameters_they_come_closest_to():
    (level, params, chosen), = blocks(quality_records())
    assert (level, params) == ("p40", 834_688)
    # bi: d1 (902 016, 67 k off) beats d2 (656 000, 179 k off); last has only d1
    assert [m.slug for m in chosen] == [WIDTH.slug, BI1.slug, LAST1.slug, GLOBAL.slug]


def test_quality_rows_show_changes_vs_level_zero_and_group_means():
    headers, rows = quality_table(quality_records())
    assert headers == ["level", "variant", "parameters (vs p0)", "wikitext", "mmlu", "piqa",
                       "truthfulqa_mc1", "fragile ↑", "robust ↑"]
    by_label = {row[1]: row for row in rows}
    width, depth = by_label["width maw"], by_label["depth bi −1 layers [2]"]
    assert width[2] == "0.8347 M (-27.3 %)" and depth[2] == "0.902 M (-21.4 %)"
    assert width[3:7] == ["+50.0% ▼", "-10.0 ▼", "-4.0 ▼", "+0.0"]
    assert depth[3:7] == ["+20.0% ▼", "-15.0 ▼", "-1.0 ▼", "+5.0 ▲"]
    # fragile: mean of wikitext 20/24-1, mmlu .45/.6-1, piqa .69/.7-1; robust: .55/.5-1
    fragile = (20 / 24 - 1 + 0.45 / 0.6 - 1 + 0.69 / 0.7 - 1) / 3
    assert depth[7] == f"{100 * fragile:+.1f} %" and depth[8] == "+10.0 %"
    assert "global maw" in by_label and "depth last −1 layers [3]" in by_label


def test_speed_rows_show_measured_beside_ideal_and_say_what_was_not_measured():
    headers, rows = speed_table(quality_records() + speed_records())
    assert headers == ["level", "variant", "TTFT (ttft@p128)", "TPOT (tpot@b1)"]
    by_label = {row[1]: row for row in rows}
    assert by_label["width maw"][2:] == ["1.10x [1.10-1.10] (ideal 1.35x, 0.81)",
                                         "1.20x [1.15-1.25] (ideal 1.30x, 0.92)"]
    # depth's ideal is the layer fraction 4/3 (its record carries none); its TTFT was
    # never timed
    assert by_label["depth bi −1 layers [2]"][2:] == ["not measured (ideal 1.33x)",
                                                       "1.25x [1.20-1.30] (ideal 1.33x, 0.94)"]
    # one layer removed costs the same whichever layer goes: last's d1 has bi's d1 speed
    assert by_label["depth last −1 layers [3]"][3] == by_label["depth bi −1 layers [2]"][3]
    # global: the width level's ideal (same FLOPs and bytes), no measurement
    assert by_label["global maw"][3] == "not measured (ideal 1.30x)"
    assert speed_table(quality_records()) == ([], [])


def test_a_speedup_whose_interval_holds_one_is_shown_as_no_change():
    records = quality_records() + speed_records()
    for r in records:
        if r.variant == WIDTH.slug and r.benchmark == "tpot@b1":
            r.extra.update(speedup_low=0.9, speedup_significant=False)
    by_label = {row[1]: row for row in speed_table(records)[1]}
    assert by_label["width maw"][3] == "**n.s.** [0.90-1.25] (ideal 1.30x)"


def test_a_speed_only_run_still_compares_the_shapes_it_timed():
    """No quality record: the speed rows come from the timed variants themselves (their
    records carry the whole model's parameters); the quality part says it was not run."""
    speed = speed_records()
    for r in speed:
        r.params = PARAMS[next(v for v in PARAMS if v.slug == r.variant)]
    (level, params, chosen), = blocks(speed)
    assert (level, params) == ("p40", 834_688)
    assert [m.slug for m in chosen] == [WIDTH.slug, BI1.slug]
    text = markdown(speed)
    section = text[text.index(TITLE):]
    assert "Quality: not measured for this model (no accuracy or perplexity test ran)" in section
    assert "| p40     | depth bi −1 layers [2] |" in section and "1.25x [1.20-1.30]" in section


def test_the_section_is_in_results_md_only_when_another_shape_ran():
    text = markdown(quality_records() + speed_records())
    assert f"### {TITLE}" in text and "`tiny-llama-shapes.png`" in text
    section = text[text.index(TITLE):]
    assert "| p40     | depth bi −1 layers [2]" in section
    # the per-level tables stay width's: no depth row, no global p40 duplicate
    capabilities = text[text.index("### Capabilities"):text.index(TITLE)]
    assert "depth" not in capabilities and "global" not in capabilities
    width_only = [r for r in quality_records() if r.shape == "width"]
    assert TITLE not in markdown(width_only)
    no_speed = markdown(quality_records())
    assert "Speed: not measured for this model" in no_speed


def test_shapes_chart_is_written(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the [plots] extra")
    paths = write_results(quality_records() + speed_records(), tmp_path, [], plots=True)
    chart = tmp_path / "tiny-llama-shapes.png"
    assert chart in paths and chart.stat().st_size > 10_000
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width_only = tmp_path / "w"
    paths = write_results([r for r in quality_records() if r.shape == "width"], width_only, [],
                          plots=True)
    assert not (width_only / "tiny-llama-shapes.png").exists()
