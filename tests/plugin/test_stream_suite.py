"""--glu-stream through the suite in a subprocess: streamed variants judged against the
baselines pinned from in-memory builds (the same model, so they pass), nothing left behind,
and shapes that cannot stream stopping the run in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GITHUB_STEP_SUMMARY": "", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "tests/suite", "-p",
                           "no:cacheprovider", "-q", "--glu-models=tiny-llama",
                           "--glu-levels=0,40", "--glu-stream", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=900)


def test_streamed_variants_pass_the_baselines_pinned_in_memory(tmp_path):
    cache = tmp_path / "cache"  # fresh: every variant is built and evaluated, none read back
    proc = _pytest("-m", "perplexity or invariants", "-k", "tiny-llama and not instruct",
                   f"--glu-cache-dir={cache}", f"--glu-report={tmp_path / 'report'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    records = json.loads((tmp_path / "report" / "results.json").read_text())["records"]
    judged = [r for r in records if r["kind"] == "perplexity"]
    assert {r["variant"] for r in judged} == {"tiny-llama-maw-p0", "tiny-llama-maw-p40"}
    assert judged and {r["verdict"] for r in judged} == {"ok"}  # compared, never skipped
    assert (cache / "stream").is_dir()  # the variants were streamed there ...
    assert not list((cache / "stream").iterdir())  # ... and each folder left with its model


def test_a_shape_that_cannot_stream_stops_the_run_in_one_line(tmp_path):
    proc = _pytest("--glu-shapes=width,depth", f"--glu-report={tmp_path}")
    assert proc.returncode == 4
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["ERROR: glu-prune: --glu-stream builds width variants only (the same "
                     "neurons cut in every layer); --glu-shapes=width,depth asks for others: "
                     "drop one of the two"], proc.stderr
