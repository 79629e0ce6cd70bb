"""The results files: the run environment, results.json's document, atomic writes, and
reading a results.json back.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from glu_prune.results.lookup import sort_records
from glu_prune.results.record import SCHEMA, Record
from glu_prune.results.runs import adopt_unlabelled

LOG = logging.getLogger(__name__)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def device_name() -> str:
    """The GPU's name when this process already uses torch with CUDA, else the CPU."""
    torch = sys.modules.get("torch")  # never import torch just to name the machine
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception as exc:  # noqa: BLE001  (a broken driver must not lose the results)
        LOG.debug("no CUDA device name: %s", exc)
    return f"cpu {platform.machine()}"


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the repository at ``root``, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Machine and library versions of this run (results.json; one line in results.md)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "device": device_name(),
            "versions": {d: _version(d) for d in ("torch", "transformers", "lm-eval",
                                                  "pytest", "pytest-xdist",
                                                  "pytest-benchmark", "glu-prune")},
            "git_commit": git_commit(root)}


def header_line(runs: list[dict[str, Any]]) -> str:
    """One short line naming where the numbers come from (identical for identical machines)."""
    parts = []
    for run in runs:
        env = run.get("environment") or {}
        v = env.get("versions") or {}
        commit = (env.get("git_commit") or "")[:10]
        parts.append(f"{env.get('device', '?')}; python {env.get('python', '?')}, "
                     f"torch {v.get('torch')}, transformers {v.get('transformers')}, "
                     f"lm-eval {v.get('lm-eval')}" + (f"; commit {commit}" if commit else ""))
    unique = sorted(set(parts))
    return "Measured on " + " | ".join(unique) if unique else ""


def document(records: Iterable[Record], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``results.json`` content: every record (sorted), each run's settings/machine, and
    ``complete``: false when any run stopped before all its selected tests ran."""
    return {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": all(run.get("complete", True) for run in runs),
            "runs": runs, "records": [r.to_dict() for r in sort_records(records)]}


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``path`` through a temporary file beside it: a reader (or a run stopped while
    writing) sees the old file or the new one, never half of each."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(doc: dict[str, Any], path: Path) -> Path:
    return write_text_atomically(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def load_document(path: str | os.PathLike) -> tuple[list[Record], list[dict[str, Any]]]:
    """Records and runs of one ``results.json``; errors name the file and what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read results JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA \
            or not isinstance(doc.get("records"), list):
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: not a glu-prune results file (schema {got!r}; expected "
                         f"{SCHEMA!r} with a 'records' list)")
    records = []
    for i, item in enumerate(doc["records"]):
        try:
            records.append(Record.from_dict(item))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: records[{i}]: {exc}") from None
    runs = doc.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ValueError(f"{path}: 'runs' must be a list of objects, got {runs!r:.80}")
    return adopt_unlabelled(records, runs, doc.get("created"), str(path))
