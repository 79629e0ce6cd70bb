"""Writing the results: the end of a run (collect its records, accumulate them into the
report folder) and the files (results.json, results.md, optional charts).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from glu_prune.results.files import (document, header_line, load_document, write_json,
                                     write_text_atomically)
from glu_prune.results.lookup import dedupe
from glu_prune.results.markdown import (incomplete_banner, markdown, skipped_line,
                                        terminal_summary)
from glu_prune.results.plots import write_plots
from glu_prune.results.record import Record
from glu_prune.results.shape_plot import write_shape_plots
from glu_prune.results.runs import accumulate, new_run_id, stamp

LOG = logging.getLogger(__name__)


def write_results(records: Sequence[Record], out_dir: str | os.PathLike,
                  runs: list[dict[str, Any]], *, plots: bool = False,
                  notes: Sequence[str] = ()) -> list[Path]:
    """Write ``results.json`` and ``results.md`` (and PNG charts with ``plots``) into
    ``out_dir``; append the markdown to ``$GITHUB_STEP_SUMMARY`` when set. Returns the paths.

    ``records`` and ``runs`` are everything the folder holds (see :func:`finish_run`).
    A run that stopped early (``complete: false``) makes results.json say
    ``"complete": false`` and results.md open with an INCOMPLETE RUN banner naming how
    many of its selected tests ran. ``notes`` are further banner lines (mixed settings of
    a merge, records dropped). Each file is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(records, header_line(runs), [*incomplete_banner(runs), *notes], runs)
    paths = [write_json(document(records, runs), out / "results.json"),
             write_text_atomically(out / "results.md", text)]
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if plots:
        paths += write_plots(records, out) + write_shape_plots(records, out)
    LOG.info("results written to %s", out)
    return paths


def collect(raw: dict[str, list[Any]]) -> tuple[list[Record], list[str]]:
    """Records from each test's raw dicts (node id -> list) and the problems found: bad
    records (skipped) and conflicting duplicates (the first, by node id, is kept)."""
    pairs, problems = [], []
    for nodeid in sorted(raw):
        for item in raw[nodeid]:
            try:
                pairs.append((Record.from_dict({**item, "test": item.get("test") or nodeid}),
                              nodeid))
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(f"record of {nodeid} ignored: {exc}")
    records, conflicts = dedupe(pairs)
    return records, problems + [f"conflicting duplicate, first kept: {c}" for c in conflicts]


def previous_results(out_dir: Path) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """What the report folder held before this run (records, runs, notes). A file that
    cannot be read is moved aside, never silently lost."""
    path = out_dir / "results.json"
    if not path.is_file():
        return [], [], []
    try:
        records, runs = load_document(path)
    except ValueError as exc:
        aside = path.with_name(f"results.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
                               f".json")
        os.replace(path, aside)
        LOG.warning("%s", exc)
        return [], [], [f"the earlier {path.name} could not be read ({exc}); moved to "
                        f"{aside.name}, so this folder starts afresh"]
    return records, runs, []


def finish_run(raw: dict[str, list[Any]], out_dir: str | os.PathLike, run: dict[str, Any],
               *, plots: bool = False) -> tuple[list[str], str | None]:
    """End of a pytest run: add its records to the report folder and rewrite the files.

    The folder accumulates (see ``runs.accumulate``): this run's records replace
    the earlier ones of the same measurement, the others stay, marked with their run and
    age. Nothing is written when the run neither recorded a number nor skipped or failed
    a suite test (a run whose every suite test errored is written, marked FAILED RUN);
    results.md and the summary say in one line how many selected tests were skipped and
    why. Returns the terminal summary lines and, when the results could not be written,
    one error line (the run must then fail; see ``glu_prune.plugin.results``).
    """
    records, problems = collect(raw)
    out = Path(out_dir)
    if not records and not run.get("skipped") and not run.get("failed"):
        return problems + [f"no test recorded results: nothing written to {out_dir}"], None
    run = {**run, "id": run.get("id") or new_run_id(datetime.now(timezone.utc))}
    try:
        old_records, old_runs, notes = previous_results(out)
        all_records, runs, dropped = accumulate(old_records, old_runs,
                                                stamp(records, run["id"]), run)
        skips = list(filter(None, [skipped_line(run)]))  # what this run did not measure
        paths = write_results(all_records, out, runs, plots=plots,
                              notes=skips + notes + dropped)
    except (OSError, ImportError) as exc:
        error = f"ERROR writing the results to {out_dir} failed: {exc}"
        LOG.error("%s", error)
        return terminal_summary(records) + problems + [error], error
    kept = len(all_records) - len(records)
    written = [f"written: {', '.join(map(str, paths))}"
               + (f" ({kept} record(s) of earlier runs kept)" if kept else "")]
    banner = [line.replace("**", "")
              for line in incomplete_banner([run]) + skips + notes + dropped]
    return terminal_summary(records) + problems + banner + written, None
