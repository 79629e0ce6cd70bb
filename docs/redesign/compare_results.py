#!/usr/bin/env python3
"""Run the tiny accuracy/perplexity suite in a checkout, or compare two runs' results.

    python compare_results.py run CHECKOUT OUT [pytest args...]   # writes OUT/results.{json,md}
    python compare_results.py diff BEFORE_OUT AFTER_OUT          # exit 1 and a diff if unequal

``run`` uses a fresh result cache inside OUT (every benchmark evaluated, none cached) and the
same options in both runs. ``diff`` drops what is local to a run and compares the rest:

results.json: "created"; per run: "id", "started", "finished", "args" (they name OUT),
"environment" (git_commit; the rest is the machine, the same here), the options naming
folders (glu_report, glu_cache_dir); per record: extra.run (the run's id). The checkout and
OUT paths are replaced by placeholders everywhere.
results.md: ISO times, ages ("2 min"), the commit in the "Measured on" line, the paths, and
table padding (runs of spaces and dashes; the padding follows the longest cell, e.g. a path).
"""
from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SUITE = ["tests/suite/test_accuracy.py", "tests/suite/test_perplexity.py",
         "--glu-models=tiny-llama,tiny-llama-instruct", "-p", "no:cacheprovider", "-q"]
RUN_LOCAL = ("id", "started", "finished", "args", "environment")
FOLDER_OPTIONS = ("glu_report", "glu_cache_dir")


def run(checkout: Path, out: Path, extra: list[str]) -> int:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", *SUITE, f"--glu-report={out}",
           f"--glu-cache-dir={out / 'cache'}", *extra]
    env = {**os.environ, "GITHUB_STEP_SUMMARY": "", "PYTHONPATH": str(checkout.resolve()),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    (out / "pytest.log").write_text(proc.stdout + proc.stderr)
    (out / "exitstatus").write_text(f"{proc.returncode}\n")
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    return proc.returncode


def _scrub(value, out: str):
    if isinstance(value, dict):
        return {k: _scrub(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, out) for v in value]
    return value.replace(out, "<out>") if isinstance(value, str) else value


def comparable_json(out: Path) -> dict:
    doc = json.loads((out / "results.json").read_text())
    doc.pop("created", None)
    for run in doc.get("runs", []):
        for key in RUN_LOCAL:
            run.pop(key, None)
        for key in FOLDER_OPTIONS:
            (run.get("options") or {}).pop(key, None)
    for record in doc.get("records", []):
        (record.get("extra") or {}).pop("run", None)
    return _scrub(doc, str(out.resolve()))


def comparable_md(out: Path) -> list[str]:
    text = (out / "results.md").read_text().replace(str(out.resolve()), "<out>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\+00:00|Z)?", "<time>", text)
    text = re.sub(r"commit [0-9a-f]{7,40}", "commit <commit>", text)
    text = re.sub(r"\b\d+ (?:s|min|h|d)\b", "<age>", text)
    # table padding follows the longest cell, and the paths differ in length between runs
    return [re.sub(r"-{3,}", "---", re.sub(r" {2,}", " ", line)) for line in text.splitlines()]


def diff(before: Path, after: Path) -> int:
    status = 0
    for name in ("exitstatus",):
        a, b = (before / name).read_text(), (after / name).read_text()
        if a != b:
            print(f"pytest exit status differs: {a.strip()} -> {b.strip()}")
            status = 1
    a_json, b_json = comparable_json(before), comparable_json(after)
    if a_json != b_json:
        status = 1
        a_lines = json.dumps(a_json, indent=1, sort_keys=True).splitlines()
        b_lines = json.dumps(b_json, indent=1, sort_keys=True).splitlines()
        print("\n".join(difflib.unified_diff(a_lines, b_lines, "before/results.json",
                                             "after/results.json", lineterm="", n=2)))
    a_md, b_md = comparable_md(before), comparable_md(after)
    if a_md != b_md:
        status = 1
        print("\n".join(difflib.unified_diff(a_md, b_md, "before/results.md", "after/results.md",
                                             lineterm="", n=2)))
    records = len(a_json.get("records", []))
    print("identical" if status == 0 else "DIFFERENT",
          f"({records} records before, {len(b_json.get('records', []))} after)")
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) >= 4:
        raise SystemExit(run(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]))
    if sys.argv[1:2] == ["diff"] and len(sys.argv) == 4:
        raise SystemExit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    raise SystemExit(__doc__)
