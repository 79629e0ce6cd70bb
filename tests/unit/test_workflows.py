"""The GitHub workflows parse, and every command they run exists in this project."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from glu_prune.cli import build_parser
from glu_prune.plugin.checks import methods as parse_methods

ROOT = Path(__file__).parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _run_scripts(data: dict) -> list[str]:
    return [step["run"] for job in data["jobs"].values() for step in job["steps"]
            if "run" in step]


def _commands(script: str) -> list[list[str]]:
    """Shell commands of a run: block, continuation lines joined, env prefixes dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words.pop(0)
        if words:
            out.append(words)
    return out


@pytest.fixture(scope="module")
def pytest_help() -> str:
    return subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_workflows_exist_and_parse():
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "nightly.yml"} <= names
    ci, nightly = _load(ROOT / ".github/workflows/ci.yml"), _load(
        ROOT / ".github/workflows/nightly.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert {"schedule", "workflow_dispatch"} <= set(nightly["on"])
    runs_on = nightly["jobs"]["nightly"]["runs-on"]
    assert "self-hosted" in runs_on and "gpu" in runs_on
    assert "secrets.HF_TOKEN" in nightly["env"]["HF_TOKEN"]


def test_ci_workflow_runs_ci_script():
    scripts = _run_scripts(_load(ROOT / ".github/workflows/ci.yml"))
    assert any(cmd == ["bash", ".ci/run"] for s in scripts for cmd in _commands(s))
    assert (ROOT / ".ci" / "run").is_file()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_command_exists(path, pytest_help):
    subcommands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    checked = 0
    for script in _run_scripts(_load(path)):
        for words in _commands(script):
            exe = Path(words[0]).name
            if exe == "pytest":
                for opt in (w.split("=")[0] for w in words if w.startswith("--")):
                    assert opt in pytest_help, f"{path.name}: pytest has no option {opt}"
                checked += 1
            elif exe.startswith("python") and words[1:3] == ["-m", "glu_prune"]:
                sub = words[3]
                assert sub in subcommands, f"{path.name}: no subcommand {sub!r}"
                build_parser().parse_args(
                    [w.replace("$GITHUB_STEP_SUMMARY", "summary.md") for w in words[3:]])
                checked += 1
            elif exe == "bash":
                assert (ROOT / words[1]).is_file(), f"{path.name}: missing {words[1]}"
                checked += 1
    assert checked, f"{path.name}: no project command found"


def test_nightly_can_compare_methods():
    """The nightly's ``methods`` input reaches --glu-methods; its default and the comparison
    its description suggests are valid method lists."""
    nightly = _load(ROOT / ".github/workflows/nightly.yml")
    methods = nightly["on"]["workflow_dispatch"]["inputs"]["methods"]
    parse_methods("--glu-methods", methods["default"])
    parse_methods("--glu-methods", re.search(r"e\.g\. (\S+)", methods["description"])[1])
    assert "inputs.methods" in nightly["env"]["GLU_METHODS"]
    accuracy = next(s for s in nightly["jobs"]["nightly"]["steps"] if s.get("id") == "accuracy")
    assert '--glu-methods "$GLU_METHODS"' in accuracy["run"]


def test_nightly_requires_baselines_and_weights_for_quality_and_speed():
    """Nothing measured is never green at night: both suite steps turn "no baseline" and
    "no weights" skips into failures."""
    steps = {s.get("id"): s for s in _load(ROOT / ".github/workflows/nightly.yml")["jobs"][
        "nightly"]["steps"]}
    for step in ("accuracy", "perf"):
        assert "--glu-require-baselines" in steps[step]["run"], step
