"""Command line: ``python -m glu_prune prune|table|report merge|report check ...``.

The CLI is the one place that writes to stdout; library modules only log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tabulate import tabulate

from glu_prune.importance import SCORERS
from glu_prune.models import MODELS, get_model_spec, load_model, make_config
from glu_prune.prune import expansion_table, prune_glu_mlp

LOG = logging.getLogger("glu_prune")


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a registered model (or a local directory) and save it with its report."""
    model, tok = load_model(args.model, weights=args.weights, model_dir=args.model_dir)
    report = prune_glu_mlp(model, pct=args.pct, expansion_ratio=args.expansion_ratio,
                           method=args.method, round_to=args.round_to, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors; tied embeddings stay tied
    if tok is not None:
        tok.save_pretrained(out)
    (out / "prune_report.json").write_text(json.dumps(
        {"model": args.model, "weights": args.weights, **report.to_dict()}, indent=1))
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
    from glu_prune.report_io import merge

    records, runs = merge(args.inputs)
    if not records:
        raise ValueError(f"no records in {', '.join(args.inputs)}; nothing to merge")
    paths = write_results(records, args.out, runs, plots=args.plots)
    sys.stdout.write(f"merged {len(records)} records from {len(args.inputs)} files -> "
                     f"{', '.join(map(str, paths))}\n")
    return 0


def cmd_report_check(args: argparse.Namespace) -> int:
    """Regressions first, then the tables; exit 1 when any regression was flagged."""
    from glu_prune.report import markdown, regressions
    from glu_prune.report_io import header_line, load_document

    records, runs = load_document(args.results)
    regs = regressions(records)
    head = [f"**{len(regs)} regression(s) flagged**", ""] + [f"- {line}" for line in regs] \
        if regs else ["**No regressions.**"]
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
    p.add_argument("--out", required=True, help="output folder")
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
