"""TTFT and TPOT of width, global-width and depth pruning at equal parameters, measured
against the unpruned model side by side, on the Llama-3.2-1B shape (random weights, CPU).

    python benchmarks/shapes_speed.py [--pct 40] [--rounds 7] [--prompt 128] [--steps 8]
        [--device cpu|cuda] [--dtype float32|bfloat16] [--model llama-3.2-1b]

Shapes, all with the parameter count of uniform width pruning at ``--pct`` (MAW):

- ``width``: every layer's MLP keeps the same k neurons (``width-r128``: k rounded to a
  multiple of 128, a few more parameters removed);
- ``global``: per-layer widths by one threshold over standardised MAW scores, the same total
  neurons (so the same parameters exactly);
- ``depth``: the number of whole layers whose removal leaves the closest parameter count
  (which layers does not matter to speed; ``last`` is used).

Each variant is timed in paired rounds, every round of it preceded by a round of the
unpruned model (A B A B ...); the speedup is the median per-round ratio with its 95 %
interval (``glu_prune.performance.stats.Speedup``). Ideals come from the same FLOP
(prefill) and weight-bytes (decode) model the suite uses, computed for each shape's own
config (depth: fewer layers; lm_head and embeddings included, so they sit below the bare
layer fraction L/(L-n), also shown).
"""

from __future__ import annotations

import argparse
import copy
import gc

import torch
from tabulate import tabulate
from transformers import AutoModelForCausalLM

from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import decode_weight_bytes, kept_count, prefill_flops
from glu_prune.core.depth import prune_depth
from glu_prune.core.matching import closest_depth
from glu_prune.core.nonuniform import prune_global
from glu_prune.core.prune import count_params, prune_glu_mlp
from glu_prune.performance.stats import Call, Speedup
from glu_prune.performance.timing import decode, prefill, random_prompt, start_decode


def paired(ref: Call, var: Call, rounds: int) -> Speedup:
    """``rounds`` A B pairs after one untimed warm-up of each."""
    ref.timed(), var.timed()
    a, b = [], []
    for _ in range(rounds):
        a.append(ref.timed())
        b.append(var.timed())
    return Speedup.of_rounds(a, b)


def calls(model, ids: torch.Tensor, steps: int) -> tuple[Call, Call]:  
    """(TTFT call, TPOT call) of ``model``: the decode call starts from its own prefill."""
    start = start_decode(model, ids)
    return (Call(prefill, (model, ids)),
            Call(decode, fresh=lambda: (*start.fresh(), steps)))


def build(base, shape: str, pct: float, depth: int):
    model = copy.deepcopy(base)
    if shape == "width":
        prune_glu_mlp(model, pct=pct)
    elif shape == "width-r128":  # kept width a multiple of 128: what GPU matmuls want
        prune_glu_mlp(model, pct=pct, round_to=128)
    elif shape == "global":
        prune_global(model, pct=pct)
    else:
        prune_depth(model, n=depth, method="last")
    return model.eval()


def ideals(config, shape: str, pct: float, depth: int, prompt: int) -> tuple[float, float]:
    n = config.intermediate_size
    round_to = 128 if shape == "width-r128" else 1
    k, layers = (n, config.num_hidden_layers - depth) if shape == "depth" else \
        (kept_count(n, pct=pct, round_to=round_to), config.num_hidden_layers)
    cut = copy.deepcopy(config)
    cut.num_hidden_layers = layers
    return (prefill_flops(config, n, prompt) / prefill_flops(cut, k, prompt),
            decode_weight_bytes(config, n) / decode_weight_bytes(cut, k))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pct", type=float, default=40)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--model", default="llama-3.2-1b")
    a = p.parse_args()
    torch.manual_seed(0)
    config = make_config(a.model)
    base = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, a.dtype))
    base = base.to(a.device).eval()
    depth = closest_depth(config, a.pct)
    ids = random_prompt(1, a.prompt, config.vocab_size, a.device)
    ref_ttft, ref_tpot = calls(base, ids, a.steps)
    rows = []
    for shape in ("width", "width-r128", "global", "depth"):
        model = build(base, shape, a.pct, depth)
        ttft, tpot = calls(model, ids, a.steps)
        s1, s2 = paired(ref_ttft, ttft, a.rounds), paired(ref_tpot, tpot, a.rounds)
        i1, i2 = ideals(config, shape, a.pct, depth, a.prompt)
        what = f"{depth} of {config.num_hidden_layers} layers" if shape == "depth" else \
            f"p{a.pct:g}"
        rows.append([shape, what, f"{count_params(model) / 1e9:.3f}B",
                     *_cells(s1, i1), *_cells(s2, i2)])
        del model, ttft, tpot
        gc.collect()
    where = (torch.cuda.get_device_name(0) if a.device.startswith("cuda")
             else f"CPU ({torch.get_num_threads()} threads)")
    print(f"{a.model} shape, random weights, {a.dtype}, {where}, "
          f"prompt {a.prompt}, {a.steps} decode steps, {a.rounds} paired rounds; unpruned "
          f"{count_params(base) / 1e9:.3f}B; depth layer fraction "
          f"{config.num_hidden_layers / (config.num_hidden_layers - depth):.3f}\n")
    print(tabulate(rows, headers=["shape", "cut", "params", "TTFT speedup [95% CI]",
                                  "ideal", "measured/ideal", "TPOT speedup [95% CI]",
                                  "ideal", "measured/ideal"], tablefmt="github"))


def _cells(s: Speedup, ideal: float) -> list[str]:
    low, high = s.interval
    ci = f" [{low:.2f}-{high:.2f}]" if low is not None else ""
    return [f"{s.median:.3f}x{ci}", f"{ideal:.3f}", f"{s.median / ideal:.2f}"]


if __name__ == "__main__":
    main()
