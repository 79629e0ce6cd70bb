"""Command line: ``python -m glu_prune prune|table|report merge|report check ...``.

The CLI is the one place that writes to stdout; library modules only log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tabulate import tabulate

from glu_prune.catalog.models import BASE_LEVELS, MODELS, get_model_spec, make_config
from glu_prune.core.arithmetic import expansion_table
from glu_prune.core.loading import ArchitectureMismatch, WeightsUnavailable
from glu_prune.core.sources import BadSource, user_source
from glu_prune.results import (ReportLock, failed_run, header_line, incomplete_banner,
                               load_document, markdown, merge, regressions, write_results)
from glu_prune.tools.prune_command import add_prune, as_options

LOG = logging.getLogger("glu_prune")


def parse_levels(text: str) -> list[float]:
    """``--levels``: a comma list of percentages; the error names the part that is not one."""
    levels = []
    for part in text.split(","):
        try:
            levels.append(float(part))
        except ValueError:
            raise ValueError(f"--levels {text!r}: {part.strip()!r} is not a number; give a "
                             f"comma list of percentages in [0, 100), e.g. 0,10,40") from None
    return levels


def cmd_table(args: argparse.Namespace) -> int:
    """Print a model's expansion table from its config alone (no weights needed)."""
    source = user_source(args.model)
    default_levels = BASE_LEVELS if source else get_model_spec(args.model).levels
    levels = parse_levels(args.levels) if args.levels else default_levels
    config = source.config if source else make_config(args.model)
    try:
        rows = expansion_table(config, levels, round_to=args.round_to,
                               prompt_len=args.prompt_len)
    except ValueError as exc:
        raise ValueError(f"{args.model}: {as_options(str(exc), pct='a --levels entry')}") \
            from None
    headers = {"pct": "pruned %", "intermediate_size": "intermediate", "expansion_ratio":
               "expansion", "total_params": "params", "params_removed_pct": "params removed %",
               "ideal_prefill_speedup": "ideal prefill x", "ideal_decode_speedup":
               "ideal decode x"}
    sys.stdout.write(tabulate([[r[k] for k in headers] for r in rows], headers=list(
        headers.values()), tablefmt=args.format, floatfmt=".3f", intfmt=",") + "\n")
    return 0


def check_plots_installed(plots: bool) -> None:
    """``--plots`` needs matplotlib (the plots extra): say so before any work."""
    if not plots:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plots needs matplotlib, which is not installed: "
                         "pip install -e \".[plots]\" from a checkout, or pip install "
                         "matplotlib; or leave out --plots") from None


def cmd_report_merge(args: argparse.Namespace) -> int:
    """Merge shards' results.json into one results.json + results.md."""
    check_plots_installed(args.plots)
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
    """Regressions first, then the tables; exit 1 when any regression was flagged or a
    run's every test failed or errored."""
    records, runs = load_document(args.results)
    regs = regressions(records)
    head = [f"**{len(regs)} regression(s) flagged**", ""] + [f"- {line}" for line in regs] \
        if regs else ["**No regressions.**"]
    banner = incomplete_banner(runs)
    head += [""] + banner if banner else []
    text = "\n".join(head) + "\n\n" + markdown(records, header_line(runs), runs=runs)
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as f:  # GitHub appends step summaries
            f.write(text)
    sys.stdout.write("\n".join(head) + "\n")
    return 1 if regs or any(failed_run(run) for run in runs) else 0


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line naming the fix, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def program_name(argv0: str | None = None) -> str:
    """``glu-prune`` (the console script), or ``python -m glu_prune`` when run that way."""
    name = Path(argv0 if argv0 is not None else sys.argv[0]).name
    return "python -m glu_prune" if name == "__main__.py" else "glu-prune"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = OneLineParser(prog=prog or program_name(), description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress and show the libraries' progress bars (default: off)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_prune(sub, _add_model)
    _add_table(sub)
    _add_report(sub)
    return parser


def _add_model(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL: one of the registered models."""
    parser.add_argument("model", metavar="MODEL",
                        help=f"a local folder (with config.json), a hub id, or one of: "
                             f"{', '.join(MODELS)}")


def _add_table(sub: argparse._SubParsersAction) -> None:
    """``table MODEL [--levels ...]``."""
    t = sub.add_parser("table", help="print the expansion table of a model")
    _add_model(t)
    t.add_argument("--levels", default=None, help="comma list (default: the model's levels)")
    t.add_argument("--round-to", type=int, default=1, help="(default: 1)")
    t.add_argument("--prompt-len", type=int, default=512,
                   help="prompt length for the FLOP-ideal prefill speedup (default: 512)")
    t.add_argument("--format", default="github", help="tabulate format (default: github)")
    t.set_defaults(func=cmd_table)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """``report merge RESULTS_JSON... -o DIR`` and ``report check RESULTS_JSON``."""
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
    c = rsub.add_parser("check", help="list regressions first; exit 1 when there are any "
                            "or a run's every test failed")
    c.add_argument("results", metavar="RESULTS_JSON", help="a results.json")
    c.add_argument("--summary", default=None,
                   help="append regressions + tables to this markdown file, e.g. "
                        "$GITHUB_STEP_SUMMARY (default: none)")
    c.set_defaults(func=cmd_report_check)


def _hint(exc: BaseException, args: argparse.Namespace) -> str:
    """This command's own way around an expected error (appended to its message)."""
    if isinstance(exc, WeightsUnavailable):
        return ("; or pass --model-dir DIR (a folder with the model's config.json and "
                "weights), or --weights random (random weights of the exact architecture)")
    if isinstance(exc, ArchitectureMismatch):
        return f"; pass --model-dir DIR with a folder that holds {args.model}"
    return ""


def _message(exc: BaseException) -> str:
    """The first line of an error's message (a KeyError's is its first argument)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. Every expected error is one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BadSource as exc:  # the model named is unusable: a usage error, exit 4
        sys.stderr.write(f"{parser.prog}: error: {_message(exc)}\n")
        return 4
    except (ValueError, KeyError, TypeError, WeightsUnavailable) as exc:
        sys.stderr.write(f"{parser.prog}: error: {_message(exc)}{_hint(exc, args)}\n")
        return 2
    except OSError as exc:  # disk full, permissions: the message names the path
        sys.stderr.write(f"{parser.prog}: error: {_message(exc)}{_hint(exc, args)}\n")
        return 1
