"""Pruning time and peak extra memory per family against the memory floor, on real shapes.

    python benchmarks/family_prune_cost.py [--runs 3] [--layers 4] [--dtype bf16]

For each shape (Llama-3.2-1B, Qwen2.5-7B, Phi-3-mini with its fused gate_up_proj), a model
of ``--layers`` layers is built from the public config's shape with random MLP weights (the
other weights are left unset: pruning never reads them). Two pruners at 40 % MAW:

- ``floor``: what any pruner must do, written out by hand: score each layer once (MAW over
  float32 copies of its gate and up rows) and copy its kept rows and columns once
  (``index_select``; a fused gate_up keeps rows ``idx`` and ``n + idx`` in one copy);
- ``glu_prune``: ``prune_glu_mlp`` (validation, family lookup, report and all).

Time: one process, the two interleaved on the same model (its MLP weights restored from a
pristine copy before each run), median of ``--runs``. Peak extra memory: a fresh process
per (shape, pruner), resident set sampled above the level just before the call.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time

import torch
from calibration_cost import PeakRSS
from tabulate import tabulate
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from glu_prune.catalog.families import family_of
from glu_prune.core.arithmetic import kept_count
from glu_prune.core.mlps import down_linear, gate_up_weights, glu_mlps, row_index, row_linears
from glu_prune.core.prune import prune_glu_mlp, select_kept

PCT = 40
# Shape fields of the public config.json of each checkpoint.
SHAPES = {
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                   vocab_size=128256, tie_word_embeddings=True)),
    "qwen2.5-7b": ("qwen2", dict(hidden_size=3584, intermediate_size=18944,
                                 num_attention_heads=28, num_key_value_heads=4,
                                 vocab_size=152064, tie_word_embeddings=False)),
    "phi-3-mini": ("phi3", dict(hidden_size=3072, intermediate_size=8192,
                                num_attention_heads=32, num_key_value_heads=32,
                                vocab_size=32064, tie_word_embeddings=False, pad_token_id=0)),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(shape: str, layers: int, dtype: torch.dtype) -> nn.Module:
    """The shape with ``layers`` layers; only MLP weights are filled (seeded normal)."""
    model_type, fields = SHAPES[shape]
    config = AutoConfig.for_model(model_type, num_hidden_layers=layers, **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mlp in glu_mlps(model):
            for p in mlp.parameters():
                p.normal_(generator=gen)
    return model.eval()


def floor(model: nn.Module) -> None:
    """Score once, copy kept rows once: the least any MAW pruner does."""
    mlps = glu_mlps(model)
    n = down_linear(mlps[0]).in_features
    k = kept_count(n, pct=PCT)
    for mlp in mlps:
        g, u = (w.detach().float() for w in gate_up_weights(mlp))
        scores = (g.amax(1) + g.amin(1).abs()) + (u.amax(1) + u.amin(1).abs())
        idx = select_kept(scores, k)
        del g, u
        rows = row_index(mlp, idx)
        with torch.no_grad():
            for lin in row_linears(mlp):
                lin.weight = nn.Parameter(lin.weight.index_select(0, rows), requires_grad=False)
            down = down_linear(mlp)
            down.weight = nn.Parameter(down.weight.index_select(1, idx), requires_grad=False)
    setattr(model.config, family_of(model.config).width_field, k)


PRUNERS = {"floor": floor, "glu_prune": lambda m: prune_glu_mlp(m, pct=PCT, method="maw")}


def _restore(model: nn.Module, pristine: list[dict[str, torch.Tensor]]) -> None:
    for mlp, weights in zip(glu_mlps(model), pristine):
        for name, w in weights.items():
            lin = getattr(mlp, name)
            lin.weight = nn.Parameter(w.clone(), requires_grad=False)
            lin.in_features, lin.out_features = w.shape[1], w.shape[0]
    setattr(model.config, family_of(model.config).width_field,
            down_linear(glu_mlps(model)[0]).in_features)


def times(shape: str, args: argparse.Namespace) -> dict[str, list[float]]:
    model = build(shape, args.layers, DTYPES[args.dtype])
    pristine = [{name: lin.weight.detach().clone() for name, lin in mlp.named_children()
                 if isinstance(lin, nn.Linear)} for mlp in glu_mlps(model)]
    out: dict[str, list[float]] = {name: [] for name in PRUNERS}
    for r in range(args.runs):
        for name in (list(PRUNERS) if r % 2 == 0 else list(PRUNERS)[::-1]):
            _restore(model, pristine)
            gc.collect()
            start = time.perf_counter()
            PRUNERS[name](model)
            out[name].append(time.perf_counter() - start)
    return out


def memory(shape: str, pruner: str, args: argparse.Namespace) -> int:
    """Peak extra resident bytes of one pruner on a freshly built model (this process)."""
    model = build(shape, args.layers, DTYPES[args.dtype])
    gc.collect()
    time.sleep(0.5)
    with PeakRSS() as rss:
        PRUNERS[pruner](model)
    return rss.peak - rss.base


def _child(shape: str, pruner: str, args: argparse.Namespace) -> int:
    cmd = [sys.executable, __file__, "--memory-of", shape, pruner, "--layers",
           str(args.layers), "--dtype", args.dtype]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--memory-of", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_of:
        print(json.dumps(memory(*args.memory_of, args)))
        return
    rows = []
    for shape, (_, fields) in SHAPES.items():
        t = times(shape, args)
        med = {name: statistics.median(v) for name, v in t.items()}
        mem = {name: _child(shape, name, args) / 2**20 for name in PRUNERS}
        layer_mib = 3 * fields["hidden_size"] * fields["intermediate_size"] * \
            DTYPES[args.dtype].itemsize / 2**20
        rows.append([shape, f"{med['floor']:.3f}", f"{med['glu_prune']:.3f}",
                     f"{med['glu_prune'] / med['floor']:.2f}", f"{mem['floor']:.0f}",
                     f"{mem['glu_prune']:.0f}", f"{mem['glu_prune'] / layer_mib:.2f}",
                     " ".join(f"{x:.3f}" for x in t["glu_prune"])])
        print(rows[-1], flush=True)  # progress: one row per shape as it is measured
    print(f"{args.layers} layers, {args.dtype}, CPU, MAW {PCT} %, median of {args.runs}")
    print(tabulate(rows, headers=["shape", "floor s", "glu_prune s", "ratio",
                                  "floor peak extra MiB", "glu_prune peak extra MiB",
                                  "glu_prune peak / one layer's MLP", "glu_prune runs s"]))


if __name__ == "__main__":
    main()
