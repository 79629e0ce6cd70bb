"""Cost of evaluating one benchmark per lm-eval call against one call over all of them.

The suite evaluates each benchmark of a variant in its own lm-eval call (so a failure or
an interruption costs one benchmark, not the variant). This script measures what that
costs on the embedded tiny model, side by side in one process: the two ways alternate
round by round (so drift and other load hit both alike) and the medians are compared.

    python benchmarks/eval_overhead.py                  # all 13 tiny twins, 3 rounds
    python benchmarks/eval_overhead.py --rounds 5 --limit 20

"combined" is the evaluation as it was: one ``simple_evaluate`` over all benchmarks.
"per-benchmark" is ``evaluate_variant`` with no cache: model identity, task fingerprints
(the cache keys) and one lm-eval call per benchmark. Both start from the loaded model and
build their own lm-eval wrapper, task manager and tasks, as the suite does per variant.
Wall and CPU time are both reported: on a shared machine CPU time is the steadier one.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from typing import Any, Callable

LOG = logging.getLogger("glu_prune.eval_overhead")


def _combined(model: Any, tok: Any, benches: list, settings: Any) -> None:
    """The evaluation before per-benchmark calls: one ``simple_evaluate`` over all."""
    from lm_eval import simple_evaluate

    from glu_prune.evaluation.harness import (_cpu_threads_for, _serial_bootstrap,
                                              extract_metrics, load_tasks, make_lm,
                                              task_manager_for)
    from glu_prune.evaluation.settings import PYTHON_SEED

    lm, tm = make_lm(model, tok, settings), task_manager_for(benches)
    with _serial_bootstrap(), _cpu_threads_for(model):
        raw = simple_evaluate(
            model=lm, tasks=load_tasks(tm, benches), task_manager=tm,
            batch_size=settings.batch_size, limit=settings.limit, use_cache=None,
            cache_requests=False, apply_chat_template=settings.chat_template,
            fewshot_as_multiturn=settings.chat_template,
            bootstrap_iters=settings.bootstrap_iters, log_samples=False,
            random_seed=PYTHON_SEED, numpy_random_seed=settings.seed,
            torch_random_seed=settings.seed, fewshot_random_seed=settings.seed)
    for b in benches:
        extract_metrics(raw, b)


def _per_benchmark(model: Any, tok: Any, benches: list, settings: Any) -> None:
    from glu_prune.evaluation import TaskSource, evaluate_variant

    ev = evaluate_variant(model, tok, "overhead", benches, settings, cache=None,
                          progress=LOG.debug, tasks=TaskSource())
    for b in benches:
        ev.result(b.name)  # raises if any benchmark failed: a failure is not a timing


def _timed(fn: Callable[..., None], *args: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time is steadier on a shared machine (the tiny
    model runs on one thread), wall time includes lm-eval's subprocesses."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(model_name: str, names: list[str] | None, limit: int | None,
            rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per round of each way, alternating which goes first."""
    import torch

    from glu_prune.catalog.benchmarks import benchmarks_for
    from glu_prune.evaluation import EvalSettings
    from glu_prune.core.loading import load_model

    model, tok = load_model(model_name, dtype=torch.float32, device="cpu")
    benches = [b for b in benchmarks_for(model_name) if names is None or b.name in names]
    settings = EvalSettings(limit=limit)
    ways = {"combined": _combined, "per-benchmark": _per_benchmark}
    _combined(model, tok, benches[:1], settings)  # warm-up: imports, first-call costs
    times: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    for r in range(rounds):
        order = list(ways) if r % 2 == 0 else list(ways)[::-1]
        for way in order:
            times[way].append(_timed(ways[way], model, tok, benches, settings))
            LOG.info("round %d %s: wall %.2f s, cpu %.2f s", r + 1, way, *times[way][-1])
    return times


def report(times: dict[str, list[tuple[float, float]]]) -> str:
    """Medians of each way, and the per-benchmark / combined ratio, wall and CPU: the
    median of the per-round ratios (each round's two runs are side by side, so a load
    change between rounds cancels), with the ratio of the medians beside it."""
    lines = []
    for i, clock in enumerate(("wall", "cpu")):
        med = {w: statistics.median(t[i] for t in ts) for w, ts in times.items()}
        per_round = [p[i] / c[i] for p, c in zip(times["per-benchmark"], times["combined"])]
        for way, ts in times.items():
            lines.append(f"{clock:>4} {way:>14}: median {med[way]:7.2f} s; rounds "
                         + " ".join(f"{t[i]:.2f}" for t in ts))
        lines.append(f"{clock:>4} ratio per-benchmark / combined: "
                     f"{statistics.median(per_round):.3f} (median of rounds "
                     + " ".join(f"{r:.3f}" for r in per_round)
                     + f"; ratio of medians {med['per-benchmark'] / med['combined']:.3f})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-llama", help="registered model (tiny-llama)")
    parser.add_argument("--benchmarks", default=None,
                        help="comma list of benchmark names (default: all of the model's)")
    parser.add_argument("--limit", type=int, default=None, help="lm-eval limit (none)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way (3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("lm_eval", "lm-eval", "datasets", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    names = args.benchmarks.split(",") if args.benchmarks else None
    sys.stdout.write(report(measure(args.model, names, args.limit, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
