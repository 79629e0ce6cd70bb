"""Locating a model's GLU MLPs and reading them through their family's description (shared
by pruning, compensation, scoring and calibration, so none of them imports another for it).

Split families hold ``gate``/``up``/``down`` Linears; fused ones (Phi-3, GLM-4) hold one
``gate_up`` Linear whose rows ``[0, n)`` are the gate and ``[n, 2n)`` the up projection, so
neuron *j* is rows *j* and *n + j* of it. Everything here reads the layout from
:mod:`glu_prune.catalog.families`, never from a ``model_type``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from glu_prune.catalog.families import FAMILIES, Family, family_of

# The distinct module layouts the families use (one per set of attribute names).
_LAYOUTS: tuple[Family, ...] = tuple(
    {(f.gate, f.up, f.gate_up, f.down): f for f in FAMILIES.values()}.values())


def layout_of(mlp: nn.Module) -> Family:
    """The family description whose projection names ``mlp`` has (split or fused)."""
    for fam in _LAYOUTS:
        names = [n for n in (fam.gate, fam.up, fam.gate_up, fam.down) if n is not None]
        if all(isinstance(getattr(mlp, n, None), nn.Linear) for n in names):
            return fam
    raise TypeError(f"{type(mlp).__name__} is not a GLU MLP: it has neither gate_proj/up_proj/"
                    f"down_proj nor gate_up_proj/down_proj Linear layers")


def _resolve(root: nn.Module, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list, where the model's family keeps it (shared by width and depth
    pruning)."""
    fam = family_of(model.config)
    # a CausalLM keeps its layers at fam.layers; its bare decoder one level up
    layers = _resolve(model, fam.layers) or _resolve(model, fam.layers.split(".", 1)[-1])
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__}: no decoder layers at {fam.layers!r}, "
                        f"where the {fam.name} family keeps them")
    return layers


def glu_mlps(model: nn.Module) -> list[nn.Module]:
    """Every decoder layer's GLU MLP, where the model's family keeps them.

    A model without a config (a bare module) is searched for modules of a known layout.
    """
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "model_type", None):
        fam = family_of(config)
        found = [getattr(layer, fam.mlp) for layer in decoder_layers(model)]
        for m in found:
            layout_of(m)
        return found
    found = [m for m in model.modules() if _has_layout(m)]
    if not found:
        raise TypeError(f"{type(model).__name__} has no GLU MLP (gate_proj/up_proj/down_proj "
                        f"or gate_up_proj/down_proj Linear layers)")
    return found


def _has_layout(m: nn.Module) -> bool:
    try:
        layout_of(m)
        return True
    except TypeError:
        return False


def down_linear(mlp: nn.Module) -> nn.Linear:
    """The ``down`` projection: column j belongs to neuron j."""
    return getattr(mlp, layout_of(mlp).down)


def width_of(mlp: nn.Module) -> int:
    """Neurons of one GLU MLP (the ``down`` projection's input size)."""
    return down_linear(mlp).in_features


def gate_up_weights(mlp: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate and up weights, each [n, hidden] (views of the fused matrix when fused)."""
    fam = layout_of(mlp)
    if fam.fused:
        w = getattr(mlp, fam.gate_up).weight
        n = w.shape[0] // 2
        return w[:n], w[n:]
    return getattr(mlp, fam.gate).weight, getattr(mlp, fam.up).weight


def row_linears(mlp: nn.Module) -> list[nn.Linear]:
    """The Linears whose output rows are neurons (gate and up, or the fused one)."""
    fam = layout_of(mlp)
    names = (fam.gate_up,) if fam.fused else (fam.gate, fam.up)
    return [getattr(mlp, n) for n in names]


def row_index(mlp: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Rows of each row Linear that hold neurons ``idx`` (fused: ``idx`` and ``n + idx``)."""
    if layout_of(mlp).fused:
        return torch.cat([idx, idx + width_of(mlp)])
    return idx


# The config field of a model whose layers keep different widths (glu-prune's non-uniform
# pruning): one entry per decoder layer. The family's width field then holds the widest
# layer's size, so a plain ``from_pretrained`` meets the narrower layers' weights with a
# size mismatch and refuses, instead of loading them re-initialised.
LAYER_WIDTHS_FIELD = "glu_prune_layer_widths"


def layer_widths(config: Any) -> list[int] | None:
    """Every layer's MLP width when the config records unequal ones, else None."""
    widths = getattr(config, LAYER_WIDTHS_FIELD, None)
    return None if widths is None else [int(w) for w in widths]


def set_layer_widths(config: Any, widths: list[int]) -> None:
    """Record per-layer MLP widths in ``config``: equal ones as the family's width field
    alone, unequal ones as the widest in that field plus :data:`LAYER_WIDTHS_FIELD`."""
    setattr(config, family_of(config).width_field, max(widths))
    if len(set(widths)) > 1:
        setattr(config, LAYER_WIDTHS_FIELD, list(widths))
    elif hasattr(config, LAYER_WIDTHS_FIELD):
        delattr(config, LAYER_WIDTHS_FIELD)


def check_layer_indices(layers: Any, num_layers: int, verb: str = "prune") -> list[int]:
    """``layers`` sorted; one-line ``ValueError`` when empty, out of range or repeated
    (``verb``: what is done to them, for the message)."""
    items = list(layers)
    if not items:
        raise ValueError(f"no layers to {verb}: give at least one layer index")
    bad = [i for i in items if isinstance(i, bool) or not isinstance(i, int)
           or not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layer index {bad[0]!r} out of range: the model has {num_layers} "
                         f"layers (valid 0..{num_layers - 1})")
    dups = sorted({i for i in items if items.count(i) > 1})
    if dups:
        raise ValueError(f"duplicate layer indices {dups}: name each layer once")
    return sorted(items)


def intermediate_size_of(mlps: list[nn.Module]) -> int:
    """The common intermediate size of ``mlps``; mixed sizes are an error."""
    sizes = [width_of(m) for m in mlps]
    if len(set(sizes)) != 1:
        raise ValueError(f"layers have mixed intermediate sizes {sorted(set(sizes))}; "
                         f"glu-prune needs the same size in every layer")
    for i, m in enumerate(mlps):
        rows = [lin.out_features for lin in row_linears(m)]
        want = [2 * sizes[0]] if layout_of(m).fused else [sizes[0]] * 2
        if rows != want:
            raise ValueError(f"layer {i}: gate/up/down sizes disagree (gate/up rows {rows}, "
                             f"down columns {sizes[0]})")
    return sizes[0]
