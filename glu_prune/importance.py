"""Neuron-importance scores for GLU MLPs, by name.

A scorer takes one layer's MLP and returns a float32 tensor of shape
``[intermediate_size]`` (higher = more important). Scoring never touches the model:
weights are read, cast to float32 copies, and nothing is written back.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

Scorer = Callable[["GLUMLP", int, int], torch.Tensor]  # (mlp, layer_index, seed) -> scores


class GLUMLP(Protocol):
    """What a scorer needs: the three projections of a gated MLP."""

    gate_proj: torch.nn.Linear
    up_proj: torch.nn.Linear
    down_proj: torch.nn.Linear


SCORERS: dict[str, Scorer] = {}


def register(name: str) -> Callable[[Scorer], Scorer]:
    """Decorator adding a scorer to the registry under ``name``."""

    def deco(fn: Scorer) -> Scorer:
        SCORERS[name] = fn
        return fn

    return deco


def _rows(mlp: GLUMLP) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 so bf16 rounding cannot reorder close scores
    return mlp.gate_proj.weight.detach().float(), mlp.up_proj.weight.detach().float()


@register("maw")
def maw(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Maximum absolute weight (the study's): ``max(g)+|min(g)| + max(u)+|min(u)|`` per neuron."""
    g, u = _rows(mlp)
    return (g.amax(1) + g.amin(1).abs()) + (u.amax(1) + u.amin(1).abs())


@register("vow")
def vow(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Variance of weights: ``var(g) + var(u)`` per neuron (population variance)."""
    g, u = _rows(mlp)
    return g.var(1, unbiased=False) + u.var(1, unbiased=False)


@register("pon")
def pon(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Product of norms: ``||g||_1 * ||u||_1`` per neuron."""
    g, u = _rows(mlp)
    return g.abs().sum(1) * u.abs().sum(1)


@register("l2")
def l2(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """L2 norm of the neuron's gate row, up row and down column taken together."""
    g, u = _rows(mlp)
    d = mlp.down_proj.weight.detach().float()
    return (g.pow(2).sum(1) + u.pow(2).sum(1) + d.pow(2).sum(0)).sqrt()


@register("random")
def random(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Seeded random scores (a control): the same seed and layer give the same choice."""
    n = mlp.gate_proj.weight.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(seed * 100_003 + layer)
    # drawn on the CPU so the choice does not depend on the device (or on meta weights)
    return torch.rand(n, generator=gen, dtype=torch.float32)


def get_scorer(name: str) -> Scorer:
    """Return the scorer registered as ``name``; the error lists the known methods."""
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown importance method {name!r}; known methods: "
                         f"{', '.join(sorted(SCORERS))}") from None


def score(mlp: GLUMLP, method: str = "maw", *, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Scores of one layer's neurons by ``method`` (float32, on the CPU)."""
    return get_scorer(method)(mlp, layer, seed).float().cpu()
