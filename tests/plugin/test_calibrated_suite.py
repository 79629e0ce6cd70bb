"""The data-driven methods through the whole suite: calibrated once per model, judged
against their pinned baselines (the slugs carry the calibration tag), compared side by side
in results.md's Methods section."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from glu_prune.core.calibration_data import settings_for

ROOT = Path(__file__).parents[2]
METHODS = ("wanda_sp", "flap", "act")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, str]:
    tmp = tmp_path_factory.mktemp("calibrated")
    cmd = [sys.executable, "-m", "pytest", "tests/suite/test_accuracy.py",
           "tests/suite/test_perplexity.py", "--glu-models=tiny-llama", "--glu-levels=0,40",
           f"--glu-methods={','.join(METHODS)}", f"--glu-report={tmp / 'report'}",
           f"--glu-cache-dir={tmp / 'cache'}", "-p", "no:cacheprovider", "-q"]
    env = {**os.environ, "GITHUB_STEP_SUMMARY": ""}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    report = tmp / "report"
    doc = json.loads((report / "results.json").read_text()) if proc.returncode == 0 else {}
    md = (report / "results.md").read_text() if proc.returncode == 0 else ""
    return proc, doc, md


@pytest.mark.slow
def test_data_driven_variants_pass_against_their_pinned_baselines(run):
    proc, doc, _ = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tag = settings_for("tiny-llama").tag
    variants = {r["variant"] for r in doc["records"]}
    assert variants == {"tiny-llama-wanda_sp-p0",
                        *(f"tiny-llama-{m}-p40-{tag}" for m in METHODS)}
    # judged, not waved through: every record compared with a pinned value
    assert {r["verdict"] for r in doc["records"]} == {"ok"}
    assert all(r["baseline"] is not None for r in doc["records"])
    assert doc["runs"][0]["builds"] == {v: 1 for v in variants}


@pytest.mark.slow
def test_results_md_compares_the_methods(run):
    proc, _, md = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    section = md.split("Methods: mean relative change, fragile / robust", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| level"))
    assert all(f"{m} (fragile / robust)" in header for m in METHODS)
    row = next(line for line in section.splitlines() if line.startswith("| p40 "))
    assert len(re.findall(r"-?\d+\.\d% / -?\d+\.\d%", row)) == len(METHODS)
