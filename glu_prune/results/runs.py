"""Runs: their ids, which run measured a record, and the report folder accumulating runs
(the latest record per measurement; records measured under other settings dropped).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable

from glu_prune.results.lookup import sort_records
from glu_prune.results.record import QUALITY_KINDS, SPEED_KINDS, Record

# Settings that change scores, as (name shown, record extra key, run option). Shards
# measured under different values are not one table: a limit of 100 examples and the
# full test set differ by more than the tolerance on their own.
RECORD_SETTINGS = (("limit", "limit", "glu_limit"),
                    ("chat template", "chat_template", "glu_chat_template"),
                    ("batch size", "batch_size", "glu_batch_size"))
# ... and the lm-eval version of the run that measured them
QUALITY_SETTINGS = tuple(name for name, _, _ in RECORD_SETTINGS) + ("lm-eval version",)


def lm_eval_version_of(run: dict[str, Any] | None) -> str | None:
    """The lm-eval version a run's environment names (None when it names none)."""
    return (((run or {}).get("environment") or {}).get("versions") or {}).get("lm-eval")


def hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


EARLIER_RUN = "earlier"  # id prefix of the run of records written before runs had ids


def new_run_id(started: datetime) -> str:
    """A run's id: its start time (sorts, and says when) and 4 hex digits (unique)."""
    return f"{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def failed_run(run: dict[str, Any]) -> bool:
    """Whether every test ``run`` ran failed or errored (it measured nothing that passed)."""
    tests = run.get("tests") or {}
    ran, failed = tests.get("ran") or 0, tests.get("failed") or 0
    return ran > 0 and failed >= ran


def run_of(record: Record) -> str | None:
    """The id of the run that measured ``record``."""
    return record.extra.get("run")


def stamp(records: Iterable[Record], run_id: str) -> list[Record]:
    """``records`` as measured by run ``run_id`` (copies; the run id goes to ``extra``)."""
    return [replace(r, extra={**r.extra, "run": run_id}) for r in records]


def adopt_unlabelled(records: list[Record], runs: list[dict[str, Any]], created: str | None,
                     path: str) -> tuple[list[Record], list[dict[str, Any]]]:
    """Ids for a results file written before runs had them: each run without one gets
    ``earlier-<n>-<hash of the file's path>`` (and the file's creation time as its start
    and end when it has none); records that name no run belong to the first of them."""
    if all(run_of(r) for r in records) and all(run.get("id") for run in runs):
        return records, runs
    tag = hashlib.sha1(path.encode()).hexdigest()[:6]  # two such files merged stay apart
    adopted = [run if run.get("id") else
               {"started": created, "finished": created, **run,
                "id": f"{EARLIER_RUN}-{i + 1}-{tag}"} for i, run in enumerate(runs)]
    first = next((run["id"] for run in adopted if run["id"].startswith(EARLIER_RUN)), None)
    if first is None:  # records without a run, beside runs that all have ids
        first = f"{EARLIER_RUN}-0-{tag}"
        adopted.insert(0, {"id": first, "started": created, "finished": created})
    return [r if run_of(r) else stamp([r], first)[0] for r in records], adopted


_PERF_CONDITIONS = ("device", "dtype", "layers", "weights", "threads")


def _conditions(r: Record, runs: dict[str, dict[str, Any]]) -> tuple[str, tuple]:
    """(quality | speed, the settings its number depends on): a record is only comparable
    with records of the same model measured under the same ones."""
    if r.kind in QUALITY_KINDS:
        version = lm_eval_version_of(runs.get(run_of(r) or ""))
        values = tuple(hashable(r.extra.get(key)) for _, key, _ in RECORD_SETTINGS)
        return "quality", tuple(zip(QUALITY_SETTINGS, values + (version,), strict=True))
    if r.kind in SPEED_KINDS:
        return "speed", tuple((k, hashable(r.extra.get(k))) for k in _PERF_CONDITIONS)
    return r.kind, ()


def accumulate(old_records: list[Record], old_runs: list[dict[str, Any]],
               new_records: list[Record], run: dict[str, Any]
               ) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """The report folder after ``run``: the latest record per measurement.

    ``new_records`` replace the old records of the same identity; older records stay,
    naming their run. Old records of a model and kind (quality / speed) that this run
    measured under other settings (limit, chat template, batch size, lm-eval version;
    device, dtype, depth, weights, threads) are dropped: they are not comparable, and
    the returned lines say what was dropped and why. Runs no record names any more are
    dropped; ``run`` is always kept (a run that recorded nothing still shows).
    """
    by_id = {r["id"]: r for r in [*old_runs, run]}
    fresh = {r.identity for r in new_records}
    now: dict[tuple[str, str], set] = defaultdict(set)
    for r in new_records:
        kind, conditions = _conditions(r, by_id)
        now[(r.model, kind)].add(conditions)
    kept, dropped = [], defaultdict(lambda: [0, set()])
    for r in old_records:
        if r.identity in fresh:
            continue
        kind, conditions = _conditions(r, by_id)
        if now.get((r.model, kind)) and conditions not in now[(r.model, kind)]:
            dropped[(r.model, kind)][0] += 1
            dropped[(r.model, kind)][1].add(conditions)
            continue
        kept.append(r)
    used = {run_of(r) for r in kept}
    runs = [old for old in old_runs if old["id"] in used and old["id"] != run["id"]] + [run]
    notes = [f"dropped {n} earlier {kind} record(s) of {model} measured under other settings "
             f"({_describe_conditions(old)}) than this run's "
             f"({_describe_conditions(now[(model, kind)])})"
             for (model, kind), (n, old) in sorted(dropped.items())]
    return sort_records(kept + list(new_records)), runs, notes


def _describe_conditions(conditions: set) -> str:
    return " | ".join(", ".join(f"{k} {v}" for k, v in c) for c in sorted(conditions, key=repr))
