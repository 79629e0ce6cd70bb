"""How much a speedup moves between runs: paired rounds against separate tests.

Every latency row of a pruned variant carries two speedups over the unpruned model:
``speedup``, the median of its rounds paired with the unpruned model's (they alternate
A B A B ... in one benchmark session), and ``speedup_separate``, the ratio of the two
tests' own medians, measured one after the other (how it was done before). Run the same
latency command several times, then give this script the results.json files: it shows,
per variant and benchmark, each run's two speedups and their spread over the runs.

    for i in 1 2 3 4 5; do
      pytest tests/suite/test_latency.py --benchmark-only --glu-models=tiny-llama \\
        --glu-report=/tmp/spread/$i -p no:cacheprovider -q
    done
    python benchmarks/speedup_spread.py /tmp/spread/*/results.json

The folder of each run must be its own: a report folder keeps earlier runs' records.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from typing import Any

from tabulate import tabulate

from glu_prune.results import load_document


def speedups(paths: list[str]) -> dict[tuple[str, str], list[tuple[float, float, Any]]]:
    """(variant, benchmark) -> per run (paired speedup, separate speedup, interval)."""
    out: dict[tuple[str, str], list[tuple[float, float, Any]]] = defaultdict(list)
    for path in paths:
        records, _ = load_document(path)
        for r in records:
            e = r.extra
            if r.pct and r.verdict is not None and e.get("speedup_paired") \
                    and e.get("speedup_separate") is not None:
                out[(r.variant, r.benchmark)].append(
                    (e["speedup"], e["speedup_separate"],
                     (e.get("speedup_low"), e.get("speedup_high"))))
    return out


def spread(values: list[float]) -> str:
    """min-max and the standard deviation over runs."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{min(values):.2f}-{max(values):.2f} (sd {sd:.2f})"


def table(found: dict[tuple[str, str], list[tuple[float, float, Any]]]) -> str:
    rows = []
    for (variant, bench), runs in sorted(found.items()):
        paired, separate = [p for p, _, _ in runs], [s for _, s, _ in runs]
        rows.append([variant, bench, len(runs),
                     " ".join(f"{p:.2f}" for p in paired), spread(paired),
                     " ".join(f"{s:.2f}" for s in separate), spread(separate)])
    return tabulate(rows, headers=["variant", "benchmark", "runs", "paired per run",
                                   "paired spread", "separate per run", "separate spread"],
                    tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json of repeated latency runs")
    args = parser.parse_args(argv)
    found = speedups(args.results)
    if not found:
        sys.stderr.write("no paired latency records in these files\n")
        return 1
    sys.stdout.write(table(found) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
