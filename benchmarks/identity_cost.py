"""Cost of a model's content identity (the result cache's model key) on real shapes.

The identity hashes every weight byte (sha256, one thread per tensor), the config and
the tokenizer; it is computed once per variant, before any benchmark runs. This measures
it on random weights of the exact architecture (CPU by default, full depth):

    python benchmarks/identity_cost.py                       # llama-3.2-1b and -3b, bf16
    python benchmarks/identity_cost.py --models llama-3.2-1b --rounds 5 --device cuda
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time


def measure(name: str, dtype: str, device: str, rounds: int) -> tuple[int, list[float]]:
    """(bytes of weights hashed, seconds per identity) for one model's shape."""
    import torch

    from glu_prune.evaluation.identity import _unique_tensors, model_identity
    from glu_prune.core.loading import load_model

    model, tok = load_model(name, weights="random", dtype=getattr(torch, dtype), device=device)
    hashed, _ = _unique_tensors(model.state_dict())  # tied embeddings count once
    size = sum(t.numel() * t.element_size() for t in hashed.values())
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model_identity(model, tok)
        times.append(time.perf_counter() - start)
    del model
    return size, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="llama-3.2-1b,llama-3.2-3b",
                        help="comma list of registered models (llama-3.2-1b,llama-3.2-3b)")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype (bfloat16)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model (3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    logging.basicConfig(level=logging.WARNING)
    for name in args.models.split(","):
        size, times = measure(name.strip(), args.dtype, args.device, args.rounds)
        sys.stdout.write(f"{name}: {size / 2**30:.2f} GiB of weights hashed ({args.dtype}, "
                         f"{args.device}); identity median {statistics.median(times):.2f} s, "
                         f"rounds " + " ".join(f"{t:.2f}" for t in times) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
