"""The tiny-model suite under ``-n 2 --dist loadgroup`` gives the serial run's results,
and every variant is built exactly once (counted over all workers).

The runs evaluate 50 items per twin (``--glu-limit``) against baselines pinned at that limit
in a scratch folder by a first run, so every record is judged, at a tenth of the cost of
the full twins (which the suite's own run covers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SELECT = ["tests/suite/test_accuracy.py", "tests/suite/test_perplexity.py",
          "--glu-models=tiny-llama", "--glu-levels=0,40", "--glu-limit=50",
          "-p", "no:cacheprovider", "-q"]


def _run(tmp: Path, name: str, *extra: str, returncode: int = 0) -> dict:
    out = tmp / name
    cmd = [sys.executable, "-m", "pytest", *SELECT, f"--glu-report={out}",
           f"--glu-baselines-dir={tmp / 'baselines'}",
           f"--glu-cache-dir={tmp / ('cache-' + name)}", *extra]  # own cache: evaluate afresh
    env = {**os.environ, "GITHUB_STEP_SUMMARY": ""}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == returncode, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def _comparable(doc: dict) -> list[dict]:
    # "extra" holds run-local facts (cache hits, timings); everything judged must match, and
    # tests are named alike (no xdist "@group" suffix)
    return [{k: v for k, v in r.items() if k != "extra"} for r in doc["records"]]


def _tables(path: Path) -> list[str]:
    """results.md after the runs table (run times and commands differ between runs)."""
    body = path.read_text().split("\n## ", 1)[1]
    return [line for line in body.splitlines() if not line.startswith("_Measured")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict, Path]:
    tmp = tmp_path_factory.mktemp("xdist-tiny")
    # pins the scratch baselines (an update run fails its tests on purpose: exit code 1)
    _run(tmp, "pin", "--glu-update-baselines", returncode=1)
    return _run(tmp, "serial"), _run(tmp, "xdist", "-n", "2", "--dist", "loadgroup"), tmp


@pytest.mark.slow
def test_tiny_suite_xdist_equals_serial(runs):
    serial, parallel, tmp = runs
    assert len(serial["records"]) >= 2 * 13  # both levels, every twin benchmark
    assert {r["verdict"] for r in serial["records"]} == {"ok"}  # judged, not waved through
    assert _comparable(parallel) == _comparable(serial)
    assert _tables(tmp / "xdist/results.md") == _tables(tmp / "serial/results.md")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["serial", "xdist"])
def test_each_variant_built_once(runs, which):
    doc = runs[0] if which == "serial" else runs[1]
    assert doc["runs"][0]["builds"] == {"tiny-llama-maw-p0": 1, "tiny-llama-maw-p40": 1}
