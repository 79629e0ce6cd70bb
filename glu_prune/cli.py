"""Command line: ``python -m glu_prune prune|table|report merge|report check ...``.

The CLI is the one place that writes to stdout; library modules only log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Callable

from tabulate import tabulate

from glu_prune.console import quiet_libraries
from glu_prune.core.calibration_data import CalibrationSettings, calibration_batches, settings_for
from glu_prune.core.depth import DATA_METHODS, LAYER_METHODS, prune_depth
from glu_prune.core.importance import SCORERS
from glu_prune.catalog.models import BASE_LEVELS, MODELS, get_model_spec, make_config
from glu_prune.core.loading import ArchitectureMismatch, WeightsUnavailable, load_model
from glu_prune.core.sources import BadSource, Source, load_source, resolve_source
from glu_prune.core.arithmetic import expansion_table, kept_count
from glu_prune.core.prune import prune_glu_mlp
from glu_prune.results import (ReportLock, header_line, incomplete_banner, load_document,
                               markdown, merge, regressions, write_results)

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


def check_prune_level(args: argparse.Namespace, width: int | None = None,
                      hidden: int | None = None) -> int:
    """The kept size that ``args`` ask for, from the architecture (a registered model's, or
    ``width``/``hidden`` of a source's config): a bad ``--pct``, ``--expansion-ratio`` or
    ``--round-to`` fails here, before any model loads."""
    if width is None:
        spec = get_model_spec(args.model)
        width, hidden = spec.intermediate_size, spec.hidden_size
    try:
        return kept_count(width, pct=args.pct, expansion_ratio=args.expansion_ratio,
                          hidden_size=hidden, round_to=args.round_to)
    except ValueError as exc:  # name the options, not the library's arguments
        raise ValueError(f"{args.model}: {_as_options(str(exc))}") from None


def _source(args: argparse.Namespace) -> Source | None:
    """The checked source MODEL names, or ``None`` for a registered model."""
    if args.model in MODELS:
        return None
    if getattr(args, "model_dir", None):
        raise BadSource(f"--model-dir goes with a registered model ({', '.join(MODELS)}); "
                        f"give the folder {args.model_dir!r} as MODEL instead")
    return resolve_source(args.model, registered=MODELS.names())


def _load(args: argparse.Namespace, source: Source | None):
    """``(name, model, tokenizer)``: a registered model, or a source's (random weights of
    its shape with ``--weights random``)."""
    if source is None:
        return args.model, *load_model(args.model, weights=args.weights,
                                        model_dir=args.model_dir)
    return source.name, *load_source(source, weights=args.weights, seed=args.seed)


def _as_options(message: str, pct: str = "--pct") -> str:
    """A library message with its argument names spelt as this command's options
    (``round_to=8`` -> ``--round-to 8``); ``pct``: what a pct is called here."""
    names = {"expansion_ratio": "--expansion-ratio", "round_to": "--round-to", "pct": pct}

    def option(m: re.Match) -> str:
        return names[m[1]] + (" " if m[2] else "")
    return re.sub(r"\b(expansion_ratio|round_to|pct)\b(=)?", option, message)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a registered model (or a local directory) and save it with its report."""
    out = Path(args.out)
    check_out_dir(out, args.force)
    source = _source(args)
    if args.depth is not None or args.remove_layers is not None:
        return _cmd_prune_depth(args, out, source)
    args.method = args.method or "maw"  # a layer method here fails as an unknown scorer
    if source is None:
        check_prune_level(args)
    else:
        check_prune_level(args, source.family.width(source.config), source.config.hidden_size)
    with quiet_libraries(verbose=args.verbose):  # transformers' "Loading weights" bar
        name, model, tok = _load(args, source)
    report = prune_glu_mlp(model, pct=args.pct, expansion_ratio=args.expansion_ratio,
                           method=args.method, round_to=args.round_to, seed=args.seed)

    _save(args, out, model, tok, {"model": name, "weights": args.weights,
                                  **report.to_dict()})
    sys.stdout.write(f"saved {name} pruned with {report.method}: intermediate "
                     f"{report.intermediate_size_before} -> {report.intermediate_size_after}, "
                     f"{report.params_removed_pct:.2f}% of parameters removed -> {out}\n")
    return 0


def _save(args: argparse.Namespace, out: Path, model, tok, report: dict) -> None:
    """Write the model, its tokenizer and ``prune_report.json`` to ``out`` atomically."""
    def write(folder: Path) -> None:
        model.save_pretrained(folder)  # safetensors; tied embeddings stay tied
        if tok is not None:
            tok.save_pretrained(folder)
        (folder / "prune_report.json").write_text(json.dumps(report, indent=1))
    try:
        with quiet_libraries(verbose=args.verbose):
            write_folder_atomically(out, write)
    except OSError as exc:
        raise OSError(f"could not save the pruned model to {out} ({exc}); {out} was left "
                      f"as it was") from exc


def _cmd_prune_depth(args: argparse.Namespace, out: Path, source: Source | None) -> int:
    """``--depth N [--method M]`` or ``--remove-layers 3,5``: remove whole layers."""
    method = args.method or "last"
    if method not in LAYER_METHODS:
        raise ValueError(f"--method {method!r} is not a layer method; with --depth: "
                         f"{', '.join(LAYER_METHODS)}")
    removed = None if args.remove_layers is None else parse_layers(args.remove_layers)
    with quiet_libraries(verbose=args.verbose):
        name, model, tok = _load(args, source)
    batches = []
    if args.depth is not None and method in DATA_METHODS:
        settings = settings_for(name) if source is None else CalibrationSettings()
        batches = calibration_batches(settings, tok)
    report = prune_depth(model, n=args.depth, method=method, removed=removed, batches=batches)
    _save(args, out, model, tok, {"model": name, "weights": args.weights, **report})
    sys.stdout.write(f"saved {name} depth-pruned with {report['method']}: layers "
                     f"{report['layers_before']} -> {report['layers_after']} (removed "
                     f"{report['removed_layers']}), {report['params_removed_pct']:.2f}% of "
                     f"parameters removed -> {out}\n")
    return 0


def parse_layers(text: str) -> list[int]:
    """``--remove-layers 3,5``: layer indices; the error names the part that is not one."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--remove-layers {text!r}: give comma-separated layer indices, "
                         f"e.g. 3,5") from None


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
    source = _source(args)
    default_levels = BASE_LEVELS if source else get_model_spec(args.model).levels
    levels = parse_levels(args.levels) if args.levels else default_levels
    config = source.config if source else make_config(args.model)
    try:
        rows = expansion_table(config, levels, round_to=args.round_to,
                               prompt_len=args.prompt_len)
    except ValueError as exc:
        raise ValueError(f"{args.model}: {_as_options(str(exc), pct='a --levels entry')}") \
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
    """Regressions first, then the tables; exit 1 when any regression was flagged."""
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
    return 1 if regs else 0


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
    _add_prune(sub)
    _add_table(sub)
    _add_report(sub)
    return parser


def _add_model(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL: one of the registered models."""
    parser.add_argument("model", metavar="MODEL",
                        help=f"a local folder (with config.json), a hub id, or one of: "
                             f"{', '.join(MODELS)}")


def _add_prune(sub: argparse._SubParsersAction) -> None:
    """``prune MODEL (--pct | --expansion-ratio) --out DIR ...``."""
    p = sub.add_parser("prune", help="prune a model and save it")
    _add_model(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--pct", type=float, help="percentage of neurons to remove, in [0, 100)")
    how.add_argument("--expansion-ratio", type=float, help="target intermediate/hidden ratio")
    how.add_argument("--depth", type=int, help="number of whole decoder layers to remove")
    how.add_argument("--remove-layers", help="comma list of decoder layer indices to remove")
    p.add_argument("--method", default=None, choices=sorted(SCORERS) + list(LAYER_METHODS),
                   help="width method (default: maw); with --depth a layer method "
                        "(default: last)")
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
    # also after the subcommand; SUPPRESS keeps a -v given before it
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="as glu-prune -v")
    p.set_defaults(func=cmd_prune)


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
    c = rsub.add_parser("check", help="list regressions first; exit 1 when there are any")
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
