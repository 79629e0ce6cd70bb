"""Pruning shapes through the suite in a subprocess: ids that say the shape (``-k depth``),
the default run unchanged, bad shape options stopping the run, and depth variants pinned
then judged against their own baselines, shown in results.md's equal-parameter section."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glu_prune.core.calibration_data import settings_for

ROOT = Path(__file__).parents[2]
TAG = settings_for("tiny-llama").tag
BASE_ARGS = ["tests/suite/test_perplexity.py", "--glu-models=tiny-llama", "--glu-levels=0,40",
             "-p", "no:cacheprovider", "-q"]


def _pytest(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "GITHUB_STEP_SUMMARY": "", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", *BASE_ARGS, *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=timeout)


def _ids(proc: subprocess.CompletedProcess) -> list[str]:
    return [line.split("[", 1)[1].rstrip("]") for line in proc.stdout.splitlines()
            if line.startswith("tests/suite/")]


def test_k_depth_and_k_global_select_their_variants_and_the_default_run_is_unchanged(
        tmp_path):
    report = f"--glu-report={tmp_path}"
    default = _ids(_pytest("--collect-only", report))
    assert default == [f"tiny-llama-maw-{lv}-{b}" for lv in ("p0", "p40")
                       for b in ("wikitext", "lambada_openai")]
    shapes = ("--glu-shapes=width,depth", "--glu-depth-methods=bi,last")
    depth = _ids(_pytest("--collect-only", report, *shapes, "-k", "depth"))
    # 40 % of the tiny model's neurons come closest to one layer fewer
    assert depth == [f"tiny-llama-depth-{m}-d1{t}-{b}" for m, t in (("bi", f"-{TAG}"),
                                                                   ("last", ""))
                     for b in ("wikitext", "lambada_openai")]
    everything = _ids(_pytest("--collect-only", report, *shapes))
    assert everything == default + depth  # level 0 first, then width, then depth
    global_ = _ids(_pytest("--collect-only", report, "--glu-shapes=global", "-k", "global"))
    assert global_ == [f"tiny-llama-maw-global-p40-{b}" for b in ("wikitext", "lambada_openai")]


@pytest.mark.parametrize("args,message", [
    (("--glu-shapes=width,cube",), "--glu-shapes=width,cube: unknown name 'cube'; valid: "),
    (("--glu-depth-methods=bi",), "--glu-depth-methods=bi: given, but depth is not in "
                                  "--glu-shapes"),
    (("--glu-shapes=depth", "--glu-depth-methods=bi,middle"), "unknown name 'middle'"),
])
def test_bad_shape_options_exit_4_with_one_line(tmp_path, args, message):
    proc = _pytest("--collect-only", f"--glu-report={tmp_path}", *args)
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], proc.stderr


@pytest.fixture(scope="module")
def pinned_then_judged(tmp_path_factory) -> tuple[subprocess.CompletedProcess, ...]:
    """Run 1 pins the depth and global variants' perplexity (fails on purpose); run 2
    judges level 0, width p40, global p40 and the depth variants against the pinned file,
    with charts."""
    tmp = tmp_path_factory.mktemp("shapes")
    (tmp / "baselines").mkdir()
    shutil.copy(ROOT / "baselines" / "tiny-llama.json", tmp / "baselines")
    common = ("--glu-shapes=width,depth,global", "--glu-depth-methods=bi,last",
              f"--glu-baselines-dir={tmp / 'baselines'}", f"--glu-cache-dir={tmp / 'cache'}")
    pin = _pytest(*common, "-k", "depth or global", "--glu-update-baselines",
                  f"--glu-report={tmp / 'pin'}")
    judged = _pytest(*common, "--glu-plots", f"--glu-report={tmp / 'report'}")
    return pin, judged, tmp


@pytest.mark.slow
def test_depth_and_global_variants_are_pinned_and_judged_against_their_own_baselines(
        pinned_then_judged):
    pin, judged, tmp = pinned_then_judged
    assert pin.returncode == 1 and "6 failed" in pin.stdout, pin.stdout[-2000:]
    stored = json.loads((tmp / "baselines" / "tiny-llama.json").read_text())["results"]
    assert {f"tiny-llama-depth-bi-d1-{TAG}", "tiny-llama-depth-last-d1",
            "tiny-llama-maw-global-p40"} <= set(stored)
    assert judged.returncode == 0, judged.stdout[-3000:] + judged.stderr[-2000:]
    records = json.loads((tmp / "report" / "results.json").read_text())["records"]
    depth = [r for r in records if r["shape"] == "depth"]
    assert len(depth) == 4 and {r["verdict"] for r in depth} == {"ok"}
    assert all(r["baseline"] is not None and r["pct"] is None for r in depth)
    assert {tuple(r["extra"]["removed_layers"]) for r in depth
            if r["method"] == "last"} == {(3,)}
    global_ = [r for r in records if r["shape"] == "global"]
    assert len(global_) == 2 and {r["verdict"] for r in global_} == {"ok"}
    width = next(r for r in records if r["variant"] == "tiny-llama-maw-p40")
    assert {r["params"] for r in global_} == {width["params"]}  # exactly equal parameters
    assert len(global_[0]["extra"]["layer_widths"]) == 4


@pytest.mark.slow
def test_results_md_compares_width_and_depth_at_equal_parameters(pinned_then_judged):
    _, judged, tmp = pinned_then_judged
    assert judged.returncode == 0, judged.stdout[-3000:]
    md = (tmp / "report" / "results.md").read_text()
    section = md.split("### Width vs depth at equal parameters", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| p40 ")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "width maw", "depth bi −1 layers " + rows[1].split("layers ")[1].split("|")[0].strip(),
        "depth last −1 layers [3]", "global maw"]
    assert all(row.count("▼") + row.count("▲") + row.count("+0.0") >= 2 for row in rows)
    assert "Speed: not measured for this model" in section
    chart = tmp / "report" / "tiny-llama-shapes.png"
    assert chart.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_speed_of_every_shape_joins_the_equal_parameter_section(pinned_then_judged, tmp_path):
    """The latency suite times depth and global variants too; run into the quality run's
    folder, every matched variant gets its measured TPOT (depth bi's from the one-layer
    depth variant the speed run timed: which layer goes does not change the cost)."""
    _, _, tmp = pinned_then_judged
    report = tmp_path / "report"
    shutil.copytree(tmp / "report", report)
    env = {**os.environ, "GITHUB_STEP_SUMMARY": "", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/suite/test_latency.py", "-k", "tpot",
         "--benchmark-only", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "--glu-models=tiny-llama", "--glu-levels=0,40", "--glu-shapes=width,depth,global",
         "--glu-perf-rounds=6",
         f"--glu-baselines-dir={tmp_path / 'none'}", f"--glu-report={report}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    records = json.loads((report / "results.json").read_text())["records"]
    timed = {r["variant"] for r in records if r["benchmark"] == "tpot" and r["metric"] == "tpot_s"}
    assert timed == {"tiny-llama-maw-p0", "tiny-llama-maw-p40", "tiny-llama-maw-global-p40",
                     "tiny-llama-depth-last-d1"}, timed
    section = (report / "results.md").read_text().split(
        "### Width vs depth at equal parameters", 1)[1]
    speed = section.split("| level ")[2]  # the second table: speed
    rows = [line for line in speed.splitlines() if line.startswith("| p40 ")]
    assert len(rows) == 4 and not any("not measured" in row for row in rows), speed
    assert all("ideal 1." in row for row in rows), speed
