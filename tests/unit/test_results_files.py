"""Results are never silently lost or mixed: the report folder accumulating runs, incomplete
runs, the report folder's lock, failed writes, and merging shards measured under different
settings."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from glu_prune.cli import main
from glu_prune.core.variants import VariantId
from glu_prune.results import (LOCK_NAME, Record, ReportFolderBusy, ReportLock, finish_run, merge,
                               read_lock, write_results)
from glu_prune.results.markdown import not_run_lines


def quality(pct: float, value: float, **extra) -> Record:
    return Record.of(VariantId("tiny-llama", "maw", pct), "mmlu", "acc,none", value,
                     kind="accuracy", verdict="ok", baseline=value, direction="higher",
                     group="fragile", extra=extra)


def speed(pct: float, value: float, **extra) -> Record:
    return Record.of(VariantId("tiny-llama", "maw", pct), "ttft@128", "median_s", value,
                     kind="latency", unit="s", direction="lower", extra=extra)


def run_with(limit: int | None = None, lm_eval: str = "0.4.9", **more) -> dict:
    return {"options": {"glu_limit": limit, "glu_chat_template": False, "glu_batch_size": 16},
            "environment": {"versions": {"lm-eval": lm_eval}}, **more}


def shard(folder: Path, records: list[Record], run: dict) -> str:
    write_results(records, folder, [run])
    return str(folder / "results.json")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- the folder accumulates


def timed_run(hour: int, **more) -> dict:
    """A pytest run that started at ``hour``:00 and ended at ``hour``:30."""
    return run_with(**{"id": f"run{hour}", "started": f"2025-03-01T{hour:02d}:00:00+00:00",
                       "finished": f"2025-03-01T{hour:02d}:30:00+00:00",
                       "args": ["-m", f"run{hour}"], "models": ["tiny-llama"], **more})


def finish(folder: Path, records: list[Record], run: dict, skipped=()) -> tuple[list, str]:
    """finish_run as the plugin calls it; results.md with table padding squashed."""
    lines, error = finish_run({"t.py::test": [r.to_dict() for r in records]} if records
                              else {}, folder, {**run, "skipped": list(skipped)})
    assert error is None, error
    return lines, re.sub(r" {2,}", " ", (folder / "results.md").read_text())


def test_a_later_run_adds_to_the_folder_and_older_records_show_their_run_and_age(tmp_path):
    finish(tmp_path, [quality(0, 0.5), quality(10, 0.45)], timed_run(9))
    _, md = finish(tmp_path, [speed(0, 0.02), speed(40, 0.016)], timed_run(12))  # speed only
    # the accuracy table is still there, its cells naming their run and its age
    assert "| p0 [r1, 3 h] | 0.500 |" in md  # a row of one run names it in its label
    assert "| p10 [r1, 3 h] | 0.450 (-5.0 ▼) |" in md
    assert "| r1 | 2025-03-01T09:00:00+00:00 | 3 h |" in md
    assert "`pytest -m run9`" in md and "| r2 | 2025-03-01T12:00:00+00:00 | newest |" in md
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [run["id"] for run in doc["runs"]] == ["run9", "run12"] and doc["complete"] is True
    assert {r["extra"]["run"] for r in doc["records"] if r["kind"] == "accuracy"} == {"run9"}


def test_a_measurement_taken_again_replaces_the_older_one(tmp_path):
    finish(tmp_path, [quality(0, 0.5), quality(10, 0.45)], timed_run(9))
    _, md = finish(tmp_path, [quality(10, 0.40)], timed_run(10))
    assert "| p10 | 0.400 (-10.0 ▼) |" in md and "0.450" not in md
    assert "| p0 [r1, 1 h] | 0.500 |" in md
    _, md = finish(tmp_path, [quality(0, 0.5), quality(10, 0.41)], timed_run(11))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [run["id"] for run in doc["runs"]] == ["run11"]  # runs without records go
    assert "| p0 | 0.500 |" in md  # one run: nothing to mark


def test_records_of_an_incomplete_run_stay_marked_until_measured_again(tmp_path):
    finish(tmp_path, [quality(0, 0.5)], timed_run(9, **INTERRUPTED))
    _, md = finish(tmp_path, [quality(10, 0.45)], timed_run(10))
    assert md.startswith("> **INCOMPLETE RUN r1: interrupted after 3 of 15 selected tests.**")
    assert "| p0 [r1, 1 h, incomplete] | 0.500 |" in md
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is False
    _, md = finish(tmp_path, [quality(0, 0.5)], timed_run(11))
    assert "INCOMPLETE" not in md
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True


@pytest.mark.parametrize("old, new, says", [
    (quality(0, 0.5, limit=100), quality(10, 0.45, limit=None),
     "dropped 1 earlier quality record(s) of tiny-llama measured under other settings "
     "(limit 100, chat template None, batch size None, lm-eval version 0.4.9) than this "
     "run's (limit None,"),
    (speed(0, 0.02, dtype="float32"), speed(40, 0.01, dtype="bfloat16"),
     "dropped 1 earlier speed record(s) of tiny-llama measured under other settings "
     "(device None, dtype float32,"),
])
def test_earlier_records_under_other_settings_are_dropped_and_that_is_said(tmp_path, old,
                                                                          new, says):
    finish(tmp_path, [old], timed_run(9))
    lines, md = finish(tmp_path, [new], timed_run(10))
    assert f"> {says}" in md and any(line.startswith(says) for line in lines)
    assert len(json.loads((tmp_path / "results.json").read_text())["records"]) == 1


def test_a_run_that_only_skipped_still_says_so_and_what_is_older(tmp_path):
    finish(tmp_path, [quality(0, 0.5)], timed_run(9))
    skip = {"model": "tiny-llama", "variant": "tiny-llama-maw-p40", "benchmark": "mmlu",
            "pct": 40.0, "round_to": 1, "test": "t.py::test_accuracy[tiny-llama-maw-p40-mmlu]",
            "reason": "no baseline for tiny-llama-maw-p40 / mmlu"}
    _, md = finish(tmp_path, [], timed_run(10), skipped=[skip])
    assert "| r2 | 2025-03-01T10:00:00+00:00 | newest |" in md
    assert "| p0 [r1, 1 h] | 0.500 |" in md
    assert "- Not run (1 test: mmlu at p40): no baseline for <variant> / <benchmark>" in md


def test_every_selected_model_appears_with_why_it_has_no_numbers(tmp_path):
    skip = {"model": "llama-3.2-1b", "variant": "llama-3.2-1b-maw-p0", "benchmark": "mmlu",
            "pct": 0.0, "round_to": 1, "test": "t::a", "reason": "llama-3.2-1b: weights unavailable (offline)"}
    run = timed_run(9, models=["llama-3.2-1b", "tiny-llama", "llama-3.2-3b"])
    _, md = finish(tmp_path, [quality(0, 0.5)], run, skipped=[skip, {**skip, "test": "t::b"}])
    sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert sections == ["llama-3.2-1b", "llama-3.2-3b", "tiny-llama"]  # registry order
    assert "- Not run (2 tests: mmlu at p0): llama-3.2-1b: weights unavailable (offline)" in md
    assert ("## llama-3.2-3b\n\n- Not run: no test of this model was selected in the runs "
            "above (deselected by -k / -m or the test paths)") in md


def test_one_cause_over_many_tests_is_one_line():
    skips = [{"model": "llama-3.2-3b-instruct", "variant": f"llama-3.2-3b-instruct-maw-p{p}",
              "benchmark": b, "pct": p, "round_to": 1, "test": f"t::{p}-{b}",
              "reason": f"no baseline for llama-3.2-3b-instruct-maw-p{p} / {b} in "
                        f"baselines/llama-3.2-3b-instruct.json (no entry for {b})"}
             for p in (0, 40) for b in ("mmlu", "gsm8k")]
    assert not_run_lines("llama-3.2-3b-instruct", [], [{"skipped": skips}]) == [
        "Not run (4 tests: mmlu, gsm8k at p0, p40): no baseline for <variant> / <benchmark> "
        "in baselines/llama-3.2-3b-instruct.json (no entry for <benchmark>)"]


def test_skips_that_name_no_level_show_none():
    # entries written before skips carried pct / round_to: the slug is not parsed
    skip = {"model": "tiny-llama", "variant": "tiny-llama-maw-p40", "benchmark": "mmlu",
            "test": "t::a", "reason": "weights unavailable"}
    assert not_run_lines("tiny-llama", [], [{"skipped": [skip]}]) == [
        "Not run (1 test: mmlu): weights unavailable"]
    rounded = {**skip, "pct": 40, "round_to": 64}
    assert not_run_lines("tiny-llama", [], [{"skipped": [rounded]}]) == [
        "Not run (1 test: mmlu at p40-r64): weights unavailable"]


def test_an_unreadable_earlier_file_is_moved_aside_not_lost(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    lines, md = finish(tmp_path, [quality(0, 0.5)], timed_run(9))
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("results.unreadable-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_text() == "{not json"
    assert f"moved to {aside[0]}, so this folder starts afresh" in md


# ---------------------------------------------------------------- incomplete runs


INTERRUPTED = {"complete": False, "tests": {"selected": 15, "ran": 3}, "stopped": "interrupted"}


def test_incomplete_run_opens_results_md_with_a_banner_and_json_says_so(tmp_path):
    write_results([quality(0, 0.5)], tmp_path, [run_with(**INTERRUPTED)])
    md = (tmp_path / "results.md").read_text()
    assert md.splitlines()[0] == ("> **INCOMPLETE RUN: interrupted after 3 of 15 selected "
                                  "tests.** Its records hold only what ran; rerunning its "
                                  "selection into this folder completes them.")
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["complete"] is False and doc["runs"][0]["tests"] == {"selected": 15, "ran": 3}


def test_complete_run_replaces_the_incomplete_one(tmp_path):
    write_results([quality(0, 0.5)], tmp_path, [run_with(**INTERRUPTED)])
    done = {"complete": True, "tests": {"selected": 15, "ran": 15}, "stopped": None}
    write_results([quality(0, 0.5)], tmp_path, [run_with(**done)])
    assert "INCOMPLETE" not in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]


def test_merge_and_check_carry_the_incomplete_shard(tmp_path, capsys):
    a = shard(tmp_path / "a", [quality(0, 0.5)], run_with(**INTERRUPTED))
    b = shard(tmp_path / "b", [quality(10, 0.45)], run_with())
    assert main(["report", "merge", a, b, "-o", str(tmp_path / "m")]) == 0
    md = (tmp_path / "m/results.md").read_text()
    # two shards are two runs: the incomplete one is named, and so are its records
    assert md.startswith(f"> **INCOMPLETE RUN r1 ({a}): interrupted after 3 of 15")
    assert re.search(r"\| p0 \[r1, \d+ s, incomplete\] +\| 0\.500 +\|", md)
    assert json.loads((tmp_path / "m/results.json").read_text())["complete"] is False
    assert main(["report", "check", str(tmp_path / "m/results.json")]) == 0
    assert f"**INCOMPLETE RUN r1 ({a}): interrupted" in capsys.readouterr().out


# ---------------------------------------------------------------- failed writes


def test_results_that_cannot_be_written_give_an_error_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    raw = {"t.py::test": [quality(0, 0.5).to_dict()]}
    lines, error = finish_run(raw, blocker, run_with())
    assert error is not None
    assert error.startswith(f"ERROR writing the results to {blocker} failed: ")
    assert lines[-1] == error
    assert finish_run(raw, tmp_path / "ok", run_with())[1] is None


def test_a_write_stopped_halfway_keeps_the_old_file(tmp_path, monkeypatch):
    write_results([quality(0, 0.5)], tmp_path, [run_with()])
    before = (tmp_path / "results.json").read_text()

    def disk_full(self, text, **kwargs):
        Path.write_bytes(self, text[: len(text) // 2].encode())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_results([quality(0, 0.9)], tmp_path, [run_with()])
    monkeypatch.undo()
    assert (tmp_path / "results.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]


# ---------------------------------------------------------------- the lock


def test_second_lock_on_a_folder_names_the_lock_file_and_the_holder(tmp_path):
    with ReportLock.acquire(tmp_path / "r", "pytest -k first") as first:
        with pytest.raises(ReportFolderBusy) as exc:
            ReportLock.acquire(tmp_path / "r", "pytest -k second")
        message = str(exc.value)
        assert str(first.path) in message and "pytest -k first" in message
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert read_lock(first.path) == first.holder  # the holder's lock is untouched
    assert not (tmp_path / "r").exists()  # nothing written: the folder it created is gone


def test_release_keeps_written_results_and_other_runs_locks(tmp_path):
    lock = ReportLock.acquire(tmp_path / "r")
    write_results([quality(0, 0.5)], tmp_path / "r", [run_with()])
    lock.release()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["results.json", "results.md"]
    other = ReportLock.acquire(tmp_path / "r")
    lock.release()  # a second release must not remove the lock another run now holds
    assert read_lock(other.path) == other.holder
    other.release()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "r"
    folder.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started": "yesterday"}
    (folder / LOCK_NAME).write_text(json.dumps(stale))
    with ReportLock.acquire(folder) as lock:
        assert read_lock(lock.path)["pid"] == os.getpid()
        assert lock.taken_over and f"pid {stale['pid']}" in lock.taken_over
    assert "took over the lock" in caplog.text
    assert not (folder / LOCK_NAME).exists()


@pytest.mark.parametrize("holder", [
    {"pid": 1, "host": "another-machine", "started": "now"},  # its pid means nothing here
    {},  # unreadable: cannot tell, so never taken over
])
def test_lock_of_another_host_or_unknown_holder_is_never_taken_over(tmp_path, holder):
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder) if holder else "")
    with pytest.raises(ReportFolderBusy, match="is in use by another run"):
        ReportLock.acquire(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == (json.dumps(holder) if holder else "")


def test_merge_refuses_a_locked_output_folder(tmp_path, capsys):
    a = shard(tmp_path / "a", [quality(0, 0.5)], run_with())
    with ReportLock.acquire(tmp_path / "m", "pytest"):
        assert main(["report", "merge", a, "-o", str(tmp_path / "m")]) == 1
    assert "is in use by another run" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- mixed settings


@pytest.mark.parametrize("run_a,run_b,says", [
    (run_with(limit=100), run_with(), "limit: 100 in {a}; None in {b}"),
    (run_with(lm_eval="0.4.8"), run_with(), "lm-eval version: '0.4.8' in {a}; '0.4.9' in {b}"),
])
def test_merge_refuses_shards_measured_under_different_settings(tmp_path, capsys, run_a,
                                                                run_b, says):
    a = shard(tmp_path / "a", [quality(0, 0.5)], run_a)
    b = shard(tmp_path / "b", [quality(10, 0.45)], run_b)
    line = says.format(a=a, b=b)
    with pytest.raises(ValueError, match="different score-changing settings") as exc:
        merge([a, b])
    assert line in str(exc.value) and "--allow-mixed-settings" in str(exc.value)
    assert main(["report", "merge", a, b, "-o", str(tmp_path / "m")]) == 2
    assert line in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["report", "merge", a, b, "-o", str(tmp_path / "m"),
                 "--allow-mixed-settings"]) == 0
    assert line in capsys.readouterr().err
    assert f"**MIXED SETTINGS** (merged with --allow-mixed-settings): {line}" in \
        (tmp_path / "m/results.md").read_text()


def test_record_settings_win_and_dtype_of_speed_records_counts(tmp_path):
    # the records say which batch size they were measured at, whatever the run's option
    a = shard(tmp_path / "a", [quality(0, 0.5, batch_size=8)], run_with())
    b = shard(tmp_path / "b", [quality(10, 0.45, batch_size=16)], run_with())
    with pytest.raises(ValueError, match=f"batch size: 8 in {a}; 16 in {b}"):
        merge([a, b])
    c = shard(tmp_path / "c", [speed(0, 0.02, dtype="bfloat16")], run_with())
    d = shard(tmp_path / "d", [speed(40, 0.015, dtype="float32")], run_with())
    with pytest.raises(ValueError, match=f"dtype: 'bfloat16' in {c}; 'float32' in {d}"):
        merge([c, d])


def test_speed_only_shard_ignores_evaluation_options(tmp_path):
    # an accuracy shard run with a limit and a speed shard run without: nothing mixed
    a = shard(tmp_path / "a", [quality(0, 0.5, limit=100)], run_with(limit=100))
    b = shard(tmp_path / "b", [speed(0, 0.02, dtype="float32")], run_with(lm_eval="0.4.1"))
    records, runs, mixed = merge([a, b])
    assert len(records) == 2 and len(runs) == 2 and mixed == []
