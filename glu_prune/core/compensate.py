"""FLAP's bias compensation: the removed neurons' mean output becomes ``down_proj``'s bias.

A removed neuron j contributes ``W_down[:, j] * h_j`` to the layer's output. Replacing
``h_j`` by its calibration mean turns that into a constant, which a bias holds exactly:
``b = sum_{j removed} mean_t(h_j) * W_down[:, j]``. So the pruned model with this bias
computes what the unpruned model computes when every removed neuron's activation is pinned
to its calibration mean (the invariant ``tests/unit/test_calibration.py`` checks).

:func:`add_bias_compensation` sets the biases on the *unpruned* model (it needs the removed
columns); the slicing that follows is ``glu_prune.core.prune.slice_mlp``'s, which leaves the
``down_proj`` bias alone. The config gets ``mlp_bias=True`` so a saved model reloads with
its biases (``gate_proj``/``up_proj`` get zero biases: Llama's ``mlp_bias`` covers all three).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from glu_prune.catalog.families import FAMILIES, family_of
from glu_prune.core.mlps import down_linear, glu_mlps, intermediate_size_of, row_linears

LOG = logging.getLogger(__name__)


def compensation_bias(down_weight: torch.Tensor, kept: torch.Tensor, mean_h: torch.Tensor,
                      bias: torch.Tensor | None = None) -> torch.Tensor:
    """``bias + W_down[:, removed] @ mean_h[removed]`` in float64, as ``down_weight``'s dtype."""
    removed = torch.ones(down_weight.shape[1], dtype=torch.bool)
    removed[kept.cpu()] = False
    w = down_weight.detach()[:, removed.to(down_weight.device)].double()
    b = w @ mean_h.to(w.device, torch.float64)[removed.to(w.device)]
    if bias is not None:
        b = b + bias.detach().double()
    return b.to(down_weight.dtype)


def _check_layer(i: int, n: int, kept: torch.Tensor, mean_h: torch.Tensor) -> None:
    """Kept indices unique and in range, means finite and one per neuron; else name the layer."""
    if kept.dim() != 1 or kept.dtype.is_floating_point or kept.numel() == 0:
        raise ValueError(f"layer {i}: kept indices must be a non-empty 1-D integer tensor, got "
                         f"{kept.dtype} of shape {tuple(kept.shape)}")
    if int(kept.min()) < 0 or int(kept.max()) >= n or kept.unique().numel() != kept.numel():
        raise ValueError(f"layer {i}: kept indices must be distinct and in [0, {n - 1}], got "
                         f"values in [{int(kept.min())}, {int(kept.max())}] "
                         f"({kept.numel() - kept.unique().numel()} repeated)")
    if tuple(mean_h.shape) != (n,):
        raise ValueError(f"layer {i}: mean activations must have shape ({n},), got "
                         f"{tuple(mean_h.shape)}")
    if not bool(torch.isfinite(mean_h).all()):
        raise ValueError(f"layer {i}: mean activations contain NaN or inf; recalibrate")


def check_bias_expressible(config: Any) -> None:
    """Refuse a family whose config has no ``mlp_bias`` flag: its saved model would reload
    without the compensation bias, silently computing something else."""
    fam = family_of(config)
    if not fam.mlp_bias:
        able = ", ".join(f.name for f in FAMILIES.values() if f.mlp_bias)
        raise ValueError(f"bias compensation (flap) needs an MLP bias the saved config can "
                         f"express, but the {fam.name} family's config has no mlp_bias; use "
                         f"another method, or a family with mlp_bias ({able})")


def add_bias_compensation(model: nn.Module, kept: Sequence[torch.Tensor],
                          means: Sequence[torch.Tensor]) -> None:
    """Give every layer's ``down_proj`` the bias that stands in for its removed neurons.

    ``kept``: per layer, the neuron indices that will be kept; ``means``: per layer,
    ``mean_t h_j`` over the calibration tokens (``LayerStats.mean``). Call it before
    slicing. Everything is checked and every bias computed before the first change, so bad
    input leaves the model as it was.
    """
    check_bias_expressible(model.config)
    mlps = glu_mlps(model)
    n = intermediate_size_of(mlps)
    if len(kept) != len(mlps) or len(means) != len(mlps):
        raise ValueError(f"need kept indices and mean activations for each of the {len(mlps)} "
                         f"GLU layers, got {len(kept)} and {len(means)}")
    for i, (idx, mean_h) in enumerate(zip(kept, means)):
        _check_layer(i, n, idx, mean_h)
    biases = [compensation_bias(down_linear(m).weight, idx, mean_h, down_linear(m).bias)
              for m, idx, mean_h in zip(mlps, kept, means)]
    for mlp, b in zip(mlps, biases):
        _set_bias(down_linear(mlp), b)
        for lin in row_linears(mlp):
            if lin.bias is None:  # zeros: the config flag below gives all three a bias
                _set_bias(lin, torch.zeros(lin.out_features, dtype=lin.weight.dtype,
                                           device=lin.weight.device))
    model.config.mlp_bias = True
    LOG.info("bias compensation on %d layers", len(mlps))


def _set_bias(lin: nn.Linear, bias: torch.Tensor) -> None:
    """Replace (or add) ``lin``'s bias."""
    lin.bias = nn.Parameter(bias.to(lin.weight.device), requires_grad=lin.weight.requires_grad)
