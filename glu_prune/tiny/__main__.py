"""``python -m glu_prune.tiny train | write-twins | compare-methods | report``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from glu_prune.console import quiet_libraries
from glu_prune.tiny.twins import write_twins
from glu_prune.tools.tiny_compare import compare_methods, full_report
from glu_prune.tools.tiny_train import STEPS, train_all


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of the tiny world."""
    ap = argparse.ArgumentParser(prog="python -m glu_prune.tiny")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="rebuild corpus, tokenizer, both models and twin data")
    tr.add_argument("--out", type=Path, default=None, help="model folder (default: shipped dirs)")
    tr.add_argument("--steps", type=int, default=STEPS, help=f"base-model steps (default: {STEPS})")
    tr.add_argument("--docs", type=int, default=200_000, help="corpus documents (default: 200000)")
    sub.add_parser("write-twins", help="regenerate the twin tasks' data files only")
    cm = sub.add_parser("compare-methods", help="every method at 10%% and 30%% on 3 twins")
    cm.add_argument("--out", type=Path, default=None, help="markdown file (default: log only)")
    cm.add_argument("--pcts", type=int, nargs="+", default=[10, 30], help="default: 10 30")
    rp = sub.add_parser("report", help="every number of the README's embedded-model section")
    rp.add_argument("--out", type=Path, default=None, help="markdown file (default: log only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("glu_prune.tiny")

    if args.cmd in ("train", "write-twins"):
        write_twins()
    if args.cmd == "train":
        t0 = time.time()
        times = train_all(args.out, steps=args.steps, n_docs=args.docs)
        log.info("stages (minutes): %s; total %.1f min", times, (time.time() - t0) / 60)
    elif args.cmd == "compare-methods":
        with quiet_libraries():  # lm-eval's bars and INFO lines for each of the 3 twins per run
            table = compare_methods(pcts=args.pcts)
        log.info("method comparison:\n%s", table)
        if args.out:
            args.out.write_text(table + "\n")
    elif args.cmd == "report":
        text = full_report()
        log.info("report:\n%s", text)
        if args.out:
            args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
