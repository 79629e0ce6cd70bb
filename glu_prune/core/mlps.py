"""Locating a model's GLU MLPs and their common width (shared by pruning, compensation and
calibration, so none of them imports another for it)."""

from __future__ import annotations

from torch import nn


def glu_mlps(model: nn.Module) -> list[nn.Module]:
    """Every decoder layer's GLU MLP (modules with gate_proj, up_proj, down_proj Linears)."""
    found = [m for m in model.modules()
             if all(isinstance(getattr(m, a, None), nn.Linear)
                    for a in ("gate_proj", "up_proj", "down_proj"))]
    if not found:
        raise TypeError(f"{type(model).__name__} has no GLU MLP (modules with gate_proj, "
                        f"up_proj and down_proj Linear layers); glu-prune prunes "
                        f"Llama-style gated MLPs only")
    return found


def intermediate_size_of(mlps: list[nn.Module]) -> int:
    """The common intermediate size of ``mlps``; mixed sizes are an error."""
    sizes = [m.gate_proj.out_features for m in mlps]
    if len(set(sizes)) != 1:
        raise ValueError(f"layers have mixed intermediate sizes {sorted(set(sizes))}; "
                         f"glu-prune needs the same size in every layer")
    for i, m in enumerate(mlps):
        if m.up_proj.out_features != sizes[0] or m.down_proj.in_features != sizes[0]:
            raise ValueError(f"layer {i}: gate/up/down sizes disagree "
                             f"({m.gate_proj.out_features}, {m.up_proj.out_features}, "
                             f"{m.down_proj.in_features})")
    return sizes[0]
