"""Merging result shards (``python -m glu_prune report merge``): records and runs of
several results.json files, refused when they conflict or were measured under different
score-changing settings.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Iterable

from glu_prune.results.files import load_document
from glu_prune.results.lookup import dedupe
from glu_prune.results.record import QUALITY_KINDS, Record
from glu_prune.results.runs import (QUALITY_SETTINGS, RECORD_SETTINGS, hashable,
                                    lm_eval_version_of)

SCORE_SETTINGS = QUALITY_SETTINGS + ("dtype",)


def score_settings(records: list[Record], runs: list[dict[str, Any]]) -> dict[str, set]:
    """Setting name -> the values a results file was measured under.

    Evaluation settings count only when the file has accuracy/perplexity records (a
    speed-only shard's default --glu-limit changed nothing); each record's own values
    (suite records carry them) win over its run's options. dtype comes from the records
    (speed records carry theirs).
    """
    values: dict[str, set] = defaultdict(set)
    quality = [r for r in records if r.kind in QUALITY_KINDS]
    for name, key, option in RECORD_SETTINGS:
        from_records = {hashable(r.extra[key]) for r in quality if key in r.extra}
        from_runs = {hashable((run.get("options") or {}).get(option)) for run in runs
                     if option in (run.get("options") or {})}
        values[name] |= from_records or (from_runs if quality else set())
    if quality:
        values["lm-eval version"] |= {lm_eval_version_of(run) for run in runs}
    values["dtype"] |= {hashable(r.extra["dtype"]) for r in records if "dtype" in r.extra}
    return {name: v for name, v in values.items() if v}


def mixed_settings(shards: dict[str, dict[str, set]]) -> list[str]:
    """One line per score-changing setting whose value differs between shards (file ->
    its settings), naming each value and the files measured under it."""
    lines = []
    for name in SCORE_SETTINGS:
        where: dict[Any, list[str]] = defaultdict(list)
        for path, settings in shards.items():
            for value in sorted(settings.get(name, ()), key=repr):
                where[value].append(path)
        if len(where) > 1:
            lines.append(f"{name}: " + "; ".join(f"{value!r} in {', '.join(paths)}"
                                                 for value, paths in where.items()))
    return lines


def merge(paths: Iterable[str | os.PathLike], *, allow_mixed_settings: bool = False
          ) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """Records, runs and mixed-setting lines of several shards.

    The same measurement with different numbers in two files is an error naming both;
    so are shards measured under different score-changing settings (limit, chat template,
    batch size, lm-eval version, dtype), unless ``allow_mixed_settings``: then the
    returned lines say what was mixed, for the results to show.
    """
    pairs, runs, settings = [], [], {}
    for path in paths:
        records, shard_runs = load_document(path)
        pairs += [(r, str(path)) for r in records]
        runs += [{**run, "source": run.get("source") or str(path)} for run in shard_runs]
        settings[str(path)] = score_settings(records, shard_runs)
    mixed = mixed_settings(settings)
    if mixed and not allow_mixed_settings:
        # one line: the CLI shows an error's first line only
        raise ValueError("shards measured under different score-changing settings (pass "
                         "--allow-mixed-settings to merge them anyway): " + " | ".join(mixed))
    records, conflicts = dedupe(pairs)
    if conflicts:
        raise ValueError(f"{len(conflicts)} conflicting duplicate records (same model / "
                         f"variant / kind / benchmark / metric, different numbers): "
                         + " | ".join(conflicts))
    return records, runs, mixed
