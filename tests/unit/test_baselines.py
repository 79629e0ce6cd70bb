"""Baselines: the comparison rule, settings checks, update, corrupt files, real figures."""

import json
import math
from pathlib import Path

import pytest

from glu_prune.catalog.benchmarks import benchmarks_for, get_benchmark
from glu_prune.core.variants import VariantId
from glu_prune.evaluation import MetricValue
from glu_prune.judging import (Check, JudgingError, QualityBaselines, Subject, Tolerance,
                               judge)
from glu_prune.judging.quality_store import dump, mismatch_help, read_baseline
from glu_prune.judging.rules import compare as compare_check
from glu_prune.judging.rules import effective_stderr
from glu_prune.tools.build_reference import build_reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "reference"  # the study's three result files
MODEL, SLUG = "tiny-llama", "tiny-llama-maw-p40"
KNOWN = {b.name: b for b in benchmarks_for(MODEL)}
ACC = get_benchmark(MODEL, "mmlu").metric("acc,none")
PPL = get_benchmark(MODEL, "wikitext").metric("word_perplexity,none")
SETTINGS = {"task": "glu_tiny_mmlu", "num_fewshot": 5, "limit": None, "chat_template": False}


def mv(value, stderr=None, n=None):
    return MetricValue(value, stderr, n)


def check(metric, run, bench="mmlu", slug=SLUG, model=MODEL):
    return Check(Subject(model, slug, bench, metric.key), run, metric.kind, metric.direction)


def compare(metric, base, run, tol=Tolerance(), bench="mmlu"):
    return compare_check(check(metric, run, bench), base, tol, "baselines/x.json")


def load(path, known=KNOWN, model=MODEL):
    return QualityBaselines.load(path.parent, model, known)


def pin(path, measured, settings=SETTINGS, slug=SLUG, bench="mmlu", model=MODEL, known=KNOWN,
        provenance=None, info=None):
    """Pin ``measured`` of ``slug`` through the one flow; returns the verdicts."""
    store = QualityBaselines.load(path.parent, model, known, required=False)
    if provenance is not None:
        store.provenance = provenance
    store.info = info or {}
    checks = [check(get_benchmark(model, bench).metric(k), v, bench, slug, model)
              for k, v in measured.items()]
    return judge(checks, store, Tolerance(), update=True, settings=settings)


def _entry(value, stderr, n):
    """A stored metric; a null stderr / n states its reason, as the store requires."""
    e = {"value": value, "stderr": stderr, "n": n}
    e.update({f"{k}_reason": "not reported" for k in ("stderr", "n") if e[k] is None})
    return e


def write_baseline(path, value=0.6, stderr=0.02, n=600):
    data = {"format": 1, "model": MODEL, "provenance": {"source": "test"}, "settings": {},
            "benchmarks": {"mmlu": dict(SETTINGS), "wikitext": {
                "task": "glu_tiny_wikitext", "num_fewshot": 0, "limit": None,
                "chat_template": False}},
            "results": {SLUG: {"mmlu": {"acc,none": _entry(value, stderr, n)},
                               "wikitext": {"word_perplexity,none": _entry(12.5, None, 8)}},
                        "tiny-llama-maw-p10": {"mmlu": {"acc,none": {
                            "value": 0.7, "stderr": 0.019, "n": 600}}}}}
    path.write_text(dump(data))
    return data


# ---------------------------------------------------------------- the rule


def test_accuracy_within_the_statistical_bound_is_ok():
    c = compare(ACC, mv(0.60, 0.02), mv(0.55, 0.02))  # bound 2*sqrt(2)*0.02 = 0.0566
    assert c.outcome == "ok" and math.isclose(c.bound, 2 * math.sqrt(2) * 0.02)


def test_planted_regression_fails_with_a_message_naming_everything():
    c = compare(ACC, mv(0.60, 0.02, 600), mv(0.50, 0.0204, 600))
    assert c.outcome == "regression" and c.failed
    msg = c.message()
    assert msg.startswith(f"tiny-llama / {SLUG} / mmlu / acc,none regression: ")
    assert msg.endswith("; if the change is expected, re-pin with --glu-update-baselines and "
                        "review the diff")
    for part in ("tiny-llama", SLUG, "mmlu", "acc,none", "regression",
                 "baseline 0.6000 ± 0.0200 (n=600)", "measured 0.5000 ± 0.0204 (n=600)",
                 "worse by 0.1000", "bound 0.0571 = max(abs_floor 0.01, z 2",
                 "baselines/x.json"):
        assert part in msg, (part, msg)


def test_improvement_beyond_the_bound_is_flagged_not_failed():
    c = compare(ACC, mv(0.40, 0.02), mv(0.50, 0.02))
    assert c.outcome == "improvement" and not c.failed
    assert "better by 0.1000" in c.message()


def test_abs_floor_applies_when_stderrs_are_tiny():
    c = compare(ACC, mv(0.600, 0.0001), mv(0.592, 0.0001))
    assert c.bound == 0.01 and c.outcome == "ok"
    assert compare(ACC, mv(0.600, 0.0001), mv(0.585, 0.0001)).outcome == "regression"


def test_z_is_settable():
    base, run = mv(0.60, 0.02), mv(0.55, 0.02)
    assert compare(ACC, base, run, Tolerance(z=2.0)).outcome == "ok"
    assert compare(ACC, base, run, Tolerance(z=1.0)).outcome == "regression"


def test_missing_stderr_falls_back_to_binomial():
    assert math.isclose(effective_stderr(mv(0.5, None, 100)), 0.05)
    assert effective_stderr(mv(0.5, 0.03, 100)) == 0.03
    assert effective_stderr(mv(12.0, None, 100)) == 0.0  # not a proportion


def test_perplexity_uses_a_relative_tolerance_settable_per_benchmark():
    assert compare(PPL, mv(10.0), mv(10.4), bench="wikitext").outcome == "ok"
    worse = compare(PPL, mv(10.0), mv(10.6), bench="wikitext")
    assert worse.outcome == "regression" and "5% relative" in worse.message()
    assert compare(PPL, mv(10.0), mv(9.4), bench="wikitext").outcome == "improvement"
    tol = Tolerance(ppl_rel_by_benchmark={"wikitext": 0.10})
    assert compare(PPL, mv(10.0), mv(10.6), tol, bench="wikitext").outcome == "ok"


def test_non_finite_measurements_are_a_clear_error():
    with pytest.raises(JudgingError, match=f"tiny-llama / {SLUG} / mmlu / acc,none: "
                                            "measured value is nan"):
        compare(ACC, mv(0.6, 0.02), mv(float("nan")))


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerance z must be a finite number >= 0, got -1"):
        Tolerance(z=-1)


# ---------------------------------------------------------------- files


def test_missing_file_names_the_file_and_how_to_pin(tmp_path):
    with pytest.raises(JudgingError, match=r"tiny-llama.json: baseline file missing; "
                                           r"pin one with .*--glu-update-baselines"):
        load(tmp_path / "tiny-llama.json")


def test_corrupt_json_names_the_file_and_position(tmp_path):
    path = tmp_path / "tiny-llama.json"
    path.write_text('{"format": 1,,}')
    with pytest.raises(JudgingError, match=r"tiny-llama.json: not valid JSON \(.* line 1"):
        load(path)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["results"][SLUG]["mmlu"]["acc,none"].update(value="abc"),
     f"results.{SLUG}.mmlu.acc,none.value: expected a finite number, got 'abc'"),
    (lambda d: d["results"][SLUG]["mmlu"]["acc,none"].update(stderr=-1),
     f"results.{SLUG}.mmlu.acc,none.stderr"),
    (lambda d: d["results"][SLUG]["mmlu"]["acc,none"].update(n=0),
     f"results.{SLUG}.mmlu.acc,none.n"),
    (lambda d: d["results"][SLUG].update(nosuch={}),
     f"results.{SLUG}.nosuch: benchmark 'nosuch' has no settings"),
    (lambda d: d["benchmarks"].update(nosuch=dict(SETTINGS)),
     "benchmarks.nosuch: unknown benchmark 'nosuch'; known for tiny-llama: wikitext, mmlu"),
    (lambda d: d["results"][SLUG]["mmlu"].update({"acc_norm,none": {"value": 0.5}}),
     f"results.{SLUG}.mmlu.acc_norm,none: unknown metric"),
    (lambda d: d["benchmarks"]["mmlu"].update(limit="all"), "benchmarks.mmlu.limit"),
    (lambda d: d.pop("results"), "field results: expected dict"),
])
def test_bad_fields_are_named(tmp_path, mutate, field):
    path = tmp_path / "tiny-llama.json"
    data = write_baseline(path)
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(JudgingError) as info:
        read_baseline(path, KNOWN)
    assert str(path) in str(info.value) and field in str(info.value)


def test_settings_mismatch_says_which_setting_and_how_to_repin(tmp_path):
    path = tmp_path / "tiny-llama.json"
    write_baseline(path)
    bf = load(path)
    assert bf.settings_mismatch("mmlu", SETTINGS) == []
    diffs = bf.settings_mismatch("mmlu", {**SETTINGS, "limit": 20, "num_fewshot": 0})
    text = mismatch_help(diffs)
    assert "num_fewshot: baseline 5" in text and "this run 0" in text
    assert "limit: baseline null" in text and "benchmarks.mmlu.limit" in text
    assert "this run 20" in text and "--glu-update-baselines" in text


# ---------------------------------------------------------------- update


def test_update_rewrites_only_the_measured_values(tmp_path):
    path = tmp_path / "tiny-llama.json"
    write_baseline(path)
    before = path.read_text()
    [v] = pin(path, {"acc,none": mv(0.55, 0.0203, 600)})
    after = path.read_text()
    assert v.outcome == "pinned" and v.failed and (v.baseline, v.run.value) == (0.6, 0.55)
    old, new = json.loads(before), json.loads(after)
    assert new["results"][SLUG]["mmlu"]["acc,none"] == {"value": 0.55, "stderr": 0.0203,
                                                        "n": 600}
    new["results"][SLUG]["mmlu"]["acc,none"] = old["results"][SLUG]["mmlu"]["acc,none"]
    assert new == old
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 2
    assert v.message() == (
        f"baseline pinned (--glu-update-baselines): tiny-llama / {SLUG} / mmlu / acc,none: "
        f"0.6 -> 0.55 in {path}; review the diff (git diff) and rerun without the flag")


def test_update_with_new_settings_drops_entries_measured_under_the_old(tmp_path):
    path = tmp_path / "tiny-llama.json"
    write_baseline(path)
    [v] = pin(path, {"acc,none": mv(0.5, 0.05, 100)}, {**SETTINGS, "limit": 100})
    data = json.loads(path.read_text())
    assert data["benchmarks"]["mmlu"]["limit"] == 100
    assert v.changes == ("settings changed, so these entries measured under the old settings "
                         "were removed: results.tiny-llama-maw-p10.mmlu")
    assert v.changes in v.message()
    assert "mmlu" not in data["results"]["tiny-llama-maw-p10"]
    assert data["results"][SLUG]["wikitext"]["word_perplexity,none"]["value"] == 12.5


def test_update_creates_a_missing_file(tmp_path):
    path = tmp_path / "sub" / "tiny-llama.json"
    pin(path, {"acc,none": mv(0.5, 0.05, 100)}, provenance={"source": "pinned"},
        info={"batch_size": 16})
    bf = load(path)
    assert bf.entry(SLUG, "mmlu") == {"acc,none": mv(0.5, 0.05, 100)}
    assert bf.data["provenance"] == {"source": "pinned"}
    assert bf.data["settings"] == {"batch_size": 16}
    assert path.read_text() == dump(bf.data)  # canonical: sorted keys, indented


@pytest.mark.parametrize("content", ['{"format": 1,,}', None])
def test_update_never_rewrites_a_corrupt_file_or_writes_nan(tmp_path, content):
    path = tmp_path / "tiny-llama.json"
    if content is None:
        write_baseline(path)
        measured = {"acc,none": mv(float("nan"))}
    else:
        path.write_text(content)
        measured = {"acc,none": mv(0.5, 0.05, 100)}
    before = path.read_bytes()
    with pytest.raises(JudgingError, match=str(path)):
        pin(path, measured) if content is None else QualityBaselines(
            path, MODEL, KNOWN).pin([check(ACC, measured["acc,none"])], SETTINGS)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-llama.json"]  # no temp left


# ---------------------------------------------------------------- the flow and the look-up


def test_flow_compares_and_names_what_has_no_baseline(tmp_path):
    path = tmp_path / "tiny-llama.json"
    write_baseline(path)
    bf = load(path)
    ok, missing = judge([check(ACC, mv(0.59, 0.02, 600)),
                         check(ACC, mv(0.5, 0.02, 600), slug="tiny-llama-maw-p60")],
                        bf, Tolerance(), update=False)
    assert ok.outcome == "ok" and ok.baseline == 0.6 and ok.source == str(path)
    assert missing.outcome == "no baseline" and missing.detail == "not pinned yet"
    assert not missing.failed and missing.message() == (
        f"no baseline for tiny-llama-maw-p60 / mmlu acc,none in {path} (not pinned yet); "
        "pin one with --glu-update-baselines and review the diff")


def test_level_0_is_judged_by_the_p0_entry_of_any_method(tmp_path):
    path = tmp_path / "tiny-llama.json"
    data = write_baseline(path)
    data["results"]["tiny-llama-maw-p0"] = {"mmlu": {"acc,none": {
        "value": 0.8, "stderr": 0.01, "n": 600}}}
    path.write_text(dump(data))
    bf = load(path)
    wanda0 = VariantId(MODEL, "wanda_sp", 0)
    assert bf.entry_for(wanda0, "mmlu") == ("tiny-llama-maw-p0", {"acc,none": mv(0.8, 0.01, 600)})
    assert bf.get(Subject(MODEL, wanda0.slug, "mmlu", "acc,none")) == mv(0.8, 0.01, 600)
    assert bf.entry_for(VariantId(MODEL, "wanda_sp", 40), "mmlu") is None  # only level 0


# ---------------------------------------------------------------- the real baseline files


@pytest.mark.parametrize("model, levels, count", [
    ("llama-3.2-1b", 7, 13), ("llama-3.2-3b", 7, 13), ("llama-3.2-1b-instruct", 4, 7)])
def test_real_baselines_hold_the_published_grid(model, levels, count):
    known = {b.name: b for b in benchmarks_for(model)}
    bf = load(ROOT / "baselines" / f"{model}.json", known, model)
    assert bf.data["provenance"]["source"] == "published study, NVIDIA L4, bf16"
    assert len(bf.slugs()) == levels
    for slug in bf.slugs():
        assert sorted(bf.data["results"][slug]) == sorted(known)
        assert len(bf.data["results"][slug]) == count
        lam = bf.entry(slug, "lambada_openai")
        assert "acc,none" not in lam and "perplexity,none" in lam  # the study dropped it
        for name, metrics in bf.data["results"][slug].items():
            for key, e in metrics.items():
                assert (e["stderr"] is None) == (known[name].metric(key).kind == "perplexity")


def test_real_baselines_hold_published_figures():
    known = {b.name: b for b in benchmarks_for("llama-3.2-1b")}
    bf = load(ROOT / "baselines" / "llama-3.2-1b.json", known, "llama-3.2-1b")
    p0, p40 = bf.entry("llama-3.2-1b-maw-p0", "mmlu"), bf.entry("llama-3.2-1b-maw-p40", "gsm8k")
    assert p0["acc,none"] == mv(0.3111, round(math.sqrt(0.3111 * 0.6889 / 14042), 6), 14042)
    assert p40["exact_match,strict-match"] == mv(0.0091, 0.0026, 1319)  # published stderr
    assert bf.entry("llama-3.2-1b-maw-p0", "wikitext") == {
        "word_perplexity,none": mv(11.5708, None, 62)}


def test_3b_instruct_has_no_baseline_and_says_so():
    bf = load(ROOT / "baselines" / "llama-3.2-3b-instruct.json", None, "llama-3.2-3b-instruct")
    assert bf.slugs() == [] and "no published numbers" in bf.why_absent(benchmark="mmlu")


def test_committed_real_baselines_are_what_the_builder_makes(tmp_path):
    for path in build_reference(REFERENCE, tmp_path):
        assert path.read_text() == (ROOT / "baselines" / path.name).read_text(), path.name


def test_first_pin_of_an_unpublished_model_replaces_the_placeholder(tmp_path):
    model = "llama-3.2-3b-instruct"
    path = tmp_path / f"{model}.json"
    path.write_text((ROOT / "baselines" / f"{model}.json").read_text())
    known = {b.name: b for b in benchmarks_for(model)}
    pin(path, {"acc,none": mv(0.6, 0.004, 14042)},
        {"task": "mmlu", "num_fewshot": 5, "limit": None, "chat_template": False},
        slug=f"{model}-maw-p0", model=model, known=known,
        provenance={"source": "pinned from glu-prune runs"})
    bf = load(path, known, model)
    assert bf.data["provenance"] == {"source": "pinned from glu-prune runs"}
    assert bf.entry(f"{model}-maw-p0", "mmlu")["acc,none"].value == 0.6


@pytest.mark.parametrize(("entry", "needs"), [
    ({"value": 0.6, "stderr": 0.02}, "expected keys value, stderr, n"),
    ({"value": 0.6, "n": 600}, "expected keys value, stderr, n"),
    ({"value": 0.6, "stderr": None, "n": 600}, "stderr: null without a reason"),
    ({"value": 0.6, "stderr": 0.02, "n": None}, "n: null without a reason"),
])
def test_baseline_entries_need_n_and_stderr_or_a_reason(tmp_path, entry, needs):
    """Issue 19, point 9: a missing n or stderr silently turned off the sample-count check;
    now the file is refused, naming the file, the entry and what is needed."""
    path = tmp_path / f"{MODEL}.json"
    data = write_baseline(path)
    data["results"][SLUG]["mmlu"]["acc,none"] = entry
    path.write_text(dump(data))
    with pytest.raises(JudgingError) as err:
        read_baseline(path)
    msg = str(err.value)
    assert str(path) in msg and f"results.{SLUG}.mmlu.acc,none" in msg and needs in msg


def test_a_stated_reason_allows_a_null_stderr(tmp_path):
    path = tmp_path / f"{MODEL}.json"
    data = write_baseline(path, stderr=None)
    assert data["results"][SLUG]["mmlu"]["acc,none"]["stderr_reason"]
    assert read_baseline(path)["results"][SLUG]["mmlu"]["acc,none"]["stderr"] is None


# ---------------------------------------------------------------- the task's version


def test_task_version_is_pinned_and_compared_only_where_the_file_has_it(tmp_path):
    path = tmp_path / "tiny-llama.json"
    write_baseline(path)
    store = load(path)
    assert store.settings_mismatch("mmlu", {**SETTINGS, "task_version": "2.0"}) == []
    pin(path, {"acc,none": mv(0.61, 0.02, 600)}, settings={**SETTINGS, "task_version": "2.0"})
    data = json.loads(path.read_text())
    assert data["benchmarks"]["mmlu"]["task_version"] == "2.0"
    # the version is a score-changing setting: the other variant's mmlu entry, measured
    # under an unknown version, is dropped by the pin (and listed in its message)
    assert "mmlu" not in data["results"]["tiny-llama-maw-p10"]
    store = load(path)
    assert store.settings_mismatch("mmlu", {**SETTINGS, "task_version": "2.0"}) == []
    assert store.settings_mismatch("mmlu", dict(SETTINGS)) == []  # before evaluating: not read
    for other in ("1.0", None):
        (diff,) = store.settings_mismatch("mmlu", {**SETTINGS, "task_version": other})
        assert diff.startswith(f"task_version: baseline \"2.0\" ({path} "
                               f"benchmarks.mmlu.task_version), this run {json.dumps(other)}")


def test_a_task_version_that_is_not_a_string_is_refused(tmp_path):
    path = tmp_path / "tiny-llama.json"
    data = write_baseline(path)
    data["benchmarks"]["mmlu"]["task_version"] = 2.0
    path.write_text(json.dumps(data))
    with pytest.raises(JudgingError, match=r"benchmarks\.mmlu\.task_version: expected the "
                                           r"task's version as a string, got 2\.0"):
        read_baseline(path, KNOWN)
