"""Command line: ``python -m glu_prune prune|table|report merge|report check ...``.

The CLI is the one place that writes to stdout; library modules only log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Callable

from tabulate import tabulate

from glu_prune.importance import SCORERS
from glu_prune.models import MODELS, get_model_spec, load_model, make_config
from glu_prune.prune import expansion_table, prune_glu_mlp

LOG = logging.getLogger("glu_prune")


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``force`` (checked before any model work)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"--out {out} is not empty; pass --force to replace it (the old "
                         f"folder stays as it is until the new one is completely written)")


def _sibling(out: Path, tag: str) -> Path:
    """A hidden, unique path beside ``out`` (same file system, so renames are atomic)."""
    return out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def write_folder_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a new folder beside ``out``, then put it in ``out``'s place.

    Until the new folder is complete ``out`` is untouched, and a failure (disk full,
    Ctrl-C) removes the temporary folder: ``out`` holds the old variant or the new one,
    never a mix. An existing ``out`` is renamed aside, replaced, then deleted; if the
    second rename fails the old one is put back.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "new")
    tmp.mkdir()  # not mkdtemp: a saved model keeps the umask's permissions, not 0700
    try:
        write(tmp)
        if not out.exists():
            os.rename(tmp, out)
            return
        old = _sibling(out, "old")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():  # the new folder is in place; only the old copy's space is lost
        LOG.warning("could not delete the replaced folder %s; delete it by hand", old)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a registered model (or a local directory) and save it with its report."""
    out = Path(args.out)
    check_out_dir(out, args.force)
    model, tok = load_model(args.model, weights=args.weights, model_dir=args.model_dir)
    report = prune_glu_mlp(model, pct=args.pct, expansion_ratio=args.expansion_ratio,
                           method=args.method, round_to=args.round_to, seed=args.seed)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)  # safetensors; tied embeddings stay tied
        if tok is not None:
            tok.save_pretrained(folder)
        (folder / "prune_report.json").write_text(json.dumps(
            {"model": args.model, "weights": args.weights, **report.to_dict()}, indent=1))

    try:
        write_folder_atomically(out, write)
    except OSError as exc:
        raise OSError(f"could not save the pruned model to {out} ({exc}); {out} was left "
                      f"as it was") from exc
    sys.stdout.write(f"saved {args.model} pruned with {report.method}: intermediate "
                     f"{report.intermediate_size_before} -> {report.intermediate_size_after}, "
                     f"{report.params_removed_pct:.2f}% of parameters removed -> {out}\n")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """Print a model's expansion table from its embedded config (no weights needed)."""
    spec = get_model_spec(args.model)
    levels = [float(x) for x in args.levels.split(",")] if args.levels else spec.levels
    rows = expansion_table(make_config(args.model), levels, round_to=args.round_to,
                           prompt_len=args.prompt_len)
    headers = {"pct": "pruned %", "intermediate_size": "intermediate", "expansion_ratio":
               "expansion", "total_params": "params", "params_removed_pct": "params removed %",
               "ideal_prefill_speedup": "ideal prefill x", "ideal_decode_speedup":
               "ideal decode x"}
    sys.stdout.write(tabulate([[r[k] for k in headers] for r in rows], headers=list(
        headers.values()), tablefmt=args.format, floatfmt=".3f", intfmt=",") + "\n")
    return 0


def cmd_report_merge(args: argparse.Namespace) -> int:
    """Merge shards' results.json into one results.json + results.md."""
    from glu_prune.report import write_results
    from glu_prune.report_io import ReportLock, merge

    records, runs, mixed = merge(args.inputs, allow_mixed_settings=args.allow_mixed_settings)
    if not records:
        raise ValueError(f"no records in {', '.join(args.inputs)}; nothing to merge")
    notes = [f"**MIXED SETTINGS** (merged with --allow-mixed-settings): {line}"
             for line in mixed]
    with ReportLock.acquire(args.out, "python -m glu_prune report merge"):
        paths = write_results(records, args.out, runs, plots=args.plots, notes=notes)
    for line in mixed:
        sys.stderr.write(f"warning: mixed settings: {line}\n")
    sys.stdout.write(f"merged {len(records)} records from {len(args.inputs)} files -> "
                     f"{', '.join(map(str, paths))}\n")
    return 0


def cmd_report_check(args: argparse.Namespace) -> int:
    """Regressions first, then the tables; exit 1 when any regression was flagged."""
    from glu_prune.report import incomplete_banner, markdown, regressions
    from glu_prune.report_io import header_line, load_document

    records, runs = load_document(args.results)
    regs = regressions(records)
    head = [f"**{len(regs)} regression(s) flagged**", ""] + [f"- {line}" for line in regs] \
        if regs else ["**No regressions.**"]
    banner = incomplete_banner(runs)
    head += [""] + banner if banner else []
    text = "\n".join(head) + "\n\n" + markdown(records, header_line(runs))
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as f:  # GitHub appends step summaries
            f.write(text)
    sys.stdout.write("\n".join(head) + "\n")
    return 1 if regs else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m glu_prune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prune", help="prune a model and save it")
    p.add_argument("model", choices=list(MODELS), metavar="MODEL",
                   help=f"one of: {', '.join(MODELS)}")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--pct", type=float, help="percentage of neurons to remove, in [0, 100)")
    how.add_argument("--expansion-ratio", type=float, help="target intermediate/hidden ratio")
    p.add_argument("--method", default="maw", choices=sorted(SCORERS), help="(default: maw)")
    p.add_argument("--round-to", type=int, default=1, help="round kept size (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method (default: 0)")
    p.add_argument("--weights", default="auto", choices=["auto", "random"],
                   help="auto = local dir / hub; random = random weights (default: auto)")
    p.add_argument("--model-dir", default=None, help="local folder of the model's weights")
    p.add_argument("--out", required=True,
                   help="output folder, written atomically; must be empty or absent")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out folder (the old one stays intact if "
                        "saving fails) (default: off)")
    p.set_defaults(func=cmd_prune)

    t = sub.add_parser("table", help="print the expansion table of a model")
    t.add_argument("model", choices=list(MODELS), metavar="MODEL",
                   help=f"one of: {', '.join(MODELS)}")
    t.add_argument("--levels", default=None, help="comma list (default: the model's levels)")
    t.add_argument("--round-to", type=int, default=1, help="(default: 1)")
    t.add_argument("--prompt-len", type=int, default=512,
                   help="prompt length for the FLOP-ideal prefill speedup (default: 512)")
    t.add_argument("--format", default="github", help="tabulate format (default: github)")
    t.set_defaults(func=cmd_table)

    r = sub.add_parser("report", help="results tables (merge shards)")
    rsub = r.add_subparsers(dest="report_command", required=True)
    m = rsub.add_parser("merge", help="merge results.json of shards into one table")
    m.add_argument("inputs", nargs="+", metavar="RESULTS_JSON", help="results.json files")
    m.add_argument("-o", "--out", required=True, help="output folder for results.json/.md")
    m.add_argument("--plots", action="store_true", help="also write PNG charts (matplotlib)")
    m.add_argument("--allow-mixed-settings", action="store_true",
                   help="merge shards measured under different score-changing settings "
                        "(limit, chat template, batch size, lm-eval version, dtype); "
                        "results.md then names them (default: refuse)")
    m.set_defaults(func=cmd_report_merge)
    c = rsub.add_parser("check", help="list regressions first; exit 1 when there are any")
    c.add_argument("results", metavar="RESULTS_JSON", help="a results.json")
    c.add_argument("--summary", default=None,
                   help="append regressions + tables to this markdown file, e.g. "
                        "$GITHUB_STEP_SUMMARY (default: none)")
    c.set_defaults(func=cmd_report_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"error: {exc.args[0] if exc.args else exc}\n")
        return 2
    except OSError as exc:  # disk full, permissions: the message names the path
        sys.stderr.write(f"error: {exc}\n")
        return 1
