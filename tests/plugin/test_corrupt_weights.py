"""Corrupt weights fail each test in one line naming the file, the error and the fix
(issue 19, point 8); before, safetensors' error came with ~150 lines of traceback per test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glu_prune.catalog.models import get_model_spec

ROOT = Path(__file__).parents[2]


def test_corrupt_safetensors_fails_each_test_in_one_line(tmp_path):
    folder = tmp_path / "models" / "tiny-llama"
    shutil.copytree(get_model_spec("tiny-llama").local_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])  # a download cut short
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "invariants",
           "tests/suite/test_invariants.py::test_variant_shapes_and_counts",
           "--glu-models=tiny-llama", "--glu-levels=0,40",
           "--glu-models-dir", str(tmp_path / "models"), "--glu-report", str(tmp_path / "r"),
           "--glu-cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:] + proc.stderr[-3000:]
    assert "2 errors" in out and "passed" not in out and "skipped" not in out, out[-3000:]
    line = f"tiny-llama: cannot read {weights} ("
    errors = out.split("= ERRORS =", 1)[-1].split("= glu-prune results =", 1)[0]
    assert errors.count(line) == 2, out[-3000:]  # one per test
    assert "download or save the model again" in out
    assert "Traceback" not in out and "SafetensorError" not in errors.replace(line, ""), \
        out[-3000:]
    assert len(errors.splitlines()) < 20, errors  # not ~150 lines per test
