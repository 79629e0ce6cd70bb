"""What calibration and pruning cost, on a real shape with random weights.

    python benchmarks/calibration_cost.py calibrate [--tokens 2048,4096,8192,16384] [--rounds 3]
    python benchmarks/calibration_cost.py prune [--runs 7] [--mem-runs 3]

``calibrate``: time and peak extra memory of ``collect_stats`` beside a plain forward
pass over the same batches (what the hooks add), for several calibration sizes. Memory:
each (mode, size) in a fresh process (a freed heap would hide the next run's peak),
sampled from the resident set (CPU) or ``max_memory_allocated`` (CUDA) above the level
after loading the model and one warm-up forward. Time: one process, forward and collect
rounds interleaved, medians.

``prune``: wall time of ``prune_glu_mlp`` beside optipfair's ``prune_model_mlp_glu``
(imports and model copies outside the timed region), interleaved, median of ``--runs``;
and each one's peak extra memory, pruning the loaded model itself (no copy) in a fresh
process per pruner and run (``--mem-runs``, alternating who goes first), sampled as above
from the level just before the call, after imports, loading and a short settle.

Speed does not depend on weight values, so random weights of the exact shape serve.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import psutil
import torch
from tabulate import tabulate

from glu_prune import load_model, prune_glu_mlp
from glu_prune.core.calibration import collect_stats

LOG = logging.getLogger("calibration_cost")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class PeakRSS:
    """Highest resident set size seen by a sampling thread while the block runs (bytes)."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s, self._stop = interval_s, threading.Event()
        self._proc = psutil.Process()
        self.base = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _batches(tokens: int, seq_len: int, batch_size: int, vocab: int) -> list[torch.Tensor]:
    """Seeded random token ids: ``tokens // seq_len`` sequences in batches."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (tokens // seq_len, seq_len), generator=gen)
    return list(ids.split(batch_size))


def _forward_all(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    """The forward passes the collector makes, without its hooks."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for b in batches:
            model(input_ids=b.to(device), use_cache=False, logits_to_keep=1)


def _model(args: argparse.Namespace) -> tuple[torch.nn.Module, int]:
    """The random-weight model of ``args`` and its vocabulary size."""
    model, _ = load_model(args.model, weights="random", num_layers=args.layers,
                          dtype=DTYPES[args.dtype], device=args.device)
    return model, model.get_input_embeddings().num_embeddings


def _run(mode: str, model: torch.nn.Module, batches: list[torch.Tensor]) -> list[Any]:
    """``collect``: the statistics collector; ``forward``: the same passes without hooks."""
    if mode == "collect":
        return collect_stats(model, batches, progress=False)
    _forward_all(model, batches)
    return []


def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak extra memory of one (mode, size) run, in this (fresh) process."""
    model, vocab = _model(args)
    batches = _batches(args.tokens, args.seq_len, args.batch_size, vocab)
    _forward_all(model, batches[:1])  # warm-up: lazy inits and thread pools are not the cost
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        out = _run(args.mode, model, batches)
        if cuda:
            torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base if cuda else rss.peak - rss.base
    state = sum(t.numel() * t.element_size() for s in out for t in s.tensors())
    return {"mode": args.mode, "tokens": sum(b.numel() for b in batches),
            "peak_extra_bytes": extra, "stats_bytes": state}


def _timed(mode: str, model: torch.nn.Module, batches: list[torch.Tensor], cuda: bool) -> float:
    start = time.perf_counter()
    _run(mode, model, batches)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_speed(args: argparse.Namespace, sizes: list[int]) -> dict[int, dict[str, float]]:
    """Median seconds of forward and collect per size, rounds interleaved (one process)."""
    model, vocab = _model(args)
    cuda = args.device.startswith("cuda")
    _forward_all(model, _batches(args.seq_len, args.seq_len, 1, vocab))  # warm-up
    out = {}
    for tokens in sizes:
        batches = _batches(tokens, args.seq_len, args.batch_size, vocab)
        times: dict[str, list[float]] = {"forward": [], "collect": []}
        for r in range(args.rounds):
            for mode in (("forward", "collect") if r % 2 == 0 else ("collect", "forward")):
                times[mode].append(_timed(mode, model, batches, cuda))
        out[tokens] = {mode: statistics.median(t) for mode, t in times.items()}
        LOG.info("%d tokens: forward %.2f s, collect %.2f s (medians of %d)", tokens,
                 out[tokens]["forward"], out[tokens]["collect"], args.rounds)
    return out


def _memory_child(args: argparse.Namespace, mode: str, tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_memory", "--mode", mode, "--tokens", str(tokens),
           "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
           "--layers", str(args.layers), "--model", args.model, "--dtype", args.dtype,
           "--device", args.device]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def calibrate(args: argparse.Namespace) -> None:
    """Memory per size and mode (fresh processes), then speed (interleaved); one table."""
    sizes = [int(t) for t in args.tokens.split(",")]
    mem = {(mode, t): _memory_child(args, mode, t) for t in sizes
           for mode in ("forward", "collect")}
    speed = measure_speed(args, sizes)
    table = [[t, f"{speed[t]['forward']:.2f}", f"{speed[t]['collect']:.2f}",
              f"{t / speed[t]['collect']:.0f}", f"{speed[t]['collect'] / speed[t]['forward']:.2f}",
              f"{mem['forward', t]['peak_extra_bytes'] / 2**20:.0f}",
              f"{mem['collect', t]['peak_extra_bytes'] / 2**20:.0f}",
              f"{mem['collect', t]['stats_bytes'] / 2**10:.0f}"] for t in sizes]
    LOG.info("%s, %d layers, %s, %s, seq_len %d, batch %d, %d rounds\n%s", args.model,
             args.layers, args.dtype, args.device, args.seq_len, args.batch_size, args.rounds,
             tabulate(table, headers=["tokens", "forward s", "collect s", "collect tok/s",
                                      "collect/forward", "forward peak extra MiB",
                                      "collect peak extra MiB", "stats KiB"]))


def _pruners(args: argparse.Namespace) -> dict[str, Callable[[torch.nn.Module], Any]]:
    """Ours and optipfair's MAW pruning at ``args.pct``; optipfair imported here, not timed."""
    import optipfair.pruning.mlp_glu as opf

    return {
        "glu_prune": lambda m: prune_glu_mlp(m, pct=args.pct, method="maw"),
        "optipfair": lambda m: opf.prune_model_mlp_glu(m, neuron_selection_method="MAW",
                                                       pruning_percentage=args.pct,
                                                       show_progress=False),
    }


def measure_prune_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak extra memory of one pruner on the model itself (no copy), in this fresh process."""
    call = _pruners(args)[args.pruner]
    model, _ = _model(args)
    cuda = args.device.startswith("cuda")
    gc.collect()
    time.sleep(0.5)  # settle: the loader's garbage collected, its threads idle
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        call(model)
        if cuda:
            torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base if cuda else rss.peak - rss.base
    return {"pruner": args.pruner, "peak_extra_bytes": extra}


def _prune_memory_child(args: argparse.Namespace, pruner: str) -> dict[str, Any]:
    """:func:`measure_prune_memory` of ``pruner`` in a fresh Python process."""
    cmd = [sys.executable, __file__, "_prune_memory", "--pruner", pruner,
           "--pct", str(args.pct), "--layers", str(args.layers), "--model", args.model,
           "--dtype", args.dtype, "--device", args.device]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def prune_times(args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per run of each pruner on fresh copies of one model, interleaved."""
    calls = _pruners(args)  # imported before any timing
    base, _ = _model(args)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(args.runs):
        # alternate who goes first so neither always meets a warmer cache
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            model = copy.deepcopy(base)
            start = time.perf_counter()
            calls[name](model)
            times[name].append(time.perf_counter() - start)
            del model
    return times


def prune(args: argparse.Namespace) -> None:
    """Peak extra memory (fresh process per pruner and run), then time; one table."""
    names = ("glu_prune", "optipfair")
    mem: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.mem_runs):
        for name in (names if r % 2 == 0 else names[::-1]):
            mem[name].append(_prune_memory_child(args, name)["peak_extra_bytes"] / 2**20)
    times = prune_times(args)
    med = {name: statistics.median(t) for name, t in times.items()}
    mib = {name: statistics.median(m) for name, m in mem.items()}
    table = [[name, f"{med[name]:.3f}", f"{min(times[name]):.3f}", f"{max(times[name]):.3f}",
              f"{mib[name]:.0f}", f"{min(mem[name]):.0f}", f"{max(mem[name]):.0f}"]
             for name in names]
    LOG.info("%s, %d layers, %s, %s, MAW %g %%, %d timed runs, %d memory runs\n%s\n"
             "glu_prune / optipfair (medians): time %.2f, peak extra memory %.2f",
             args.model, args.layers, args.dtype, args.device, args.pct, args.runs,
             args.mem_runs, tabulate(table, headers=["", "median s", "min s", "max s",
                                                     "peak extra MiB", "min MiB", "max MiB"]),
             med["glu_prune"] / med["optipfair"], mib["glu_prune"] / mib["optipfair"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="llama-3.2-1b", help="(default: llama-3.2-1b)")
    common.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="(default: fp32)")
    common.add_argument("--device", default="cpu", help="(default: cpu)")
    c = sub.add_parser("calibrate", parents=[common], help="calibration throughput and memory")
    c.add_argument("--tokens", default="2048,4096,8192,16384",
                   help="calibration sizes in tokens (default: 2048,4096,8192,16384)")
    c.add_argument("--seq-len", type=int, default=512, help="(default: 512)")
    c.add_argument("--batch-size", type=int, default=4, help="(default: 4)")
    c.add_argument("--layers", type=int, default=2, help="(default: 2)")
    c.add_argument("--rounds", type=int, default=3, help="timed rounds per size (default: 3)")
    one = sub.add_parser("_memory", parents=[common])  # internal: one measurement, JSON out
    one.add_argument("--mode", choices=["forward", "collect"], required=True)
    one.add_argument("--tokens", type=int, required=True)
    one.add_argument("--seq-len", type=int, required=True)
    one.add_argument("--batch-size", type=int, required=True)
    one.add_argument("--layers", type=int, required=True)
    pr = sub.add_parser("prune", parents=[common],
                        help="ours vs optipfair's pruning time and memory")
    pr.add_argument("--layers", type=int, default=4, help="(default: 4)")
    pr.add_argument("--pct", type=float, default=40, help="(default: 40)")
    pr.add_argument("--runs", type=int, default=7, help="timed runs (default: 7)")
    pr.add_argument("--mem-runs", type=int, default=3,
                    help="fresh processes per pruner for memory (default: 3)")
    pm = sub.add_parser("_prune_memory", parents=[common])  # internal: one pruner, JSON out
    pm.add_argument("--pruner", choices=["glu_prune", "optipfair"], required=True)
    pm.add_argument("--layers", type=int, required=True)
    pm.add_argument("--pct", type=float, required=True)
    return p


def main() -> None:
    args = _parser().parse_args()
    # the libraries' per-call INFO lines would bury the table
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    LOG.setLevel(logging.INFO)
    if args.command == "_memory":
        sys.stdout.write(json.dumps(measure_memory(args)) + "\n")
    elif args.command == "_prune_memory":
        sys.stdout.write(json.dumps(measure_prune_memory(args)) + "\n")
    elif args.command == "calibrate":
        calibrate(args)
    else:
        prune(args)


if __name__ == "__main__":
    main()
