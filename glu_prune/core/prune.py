"""GLU width pruning: neuron selection and surgery.

Neuron j of a layer is row j of ``gate_proj`` and ``up_proj`` and column j of
``down_proj``. Pruning keeps the same ``k`` neurons-per-layer count everywhere, slices
those three matrices and sets ``config.intermediate_size = k``. Nothing else changes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from glu_prune.core.arithmetic import kept_count, pct_of
from glu_prune.core.importance import get_scorer, score

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------- locating MLPs


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


# ---------------------------------------------------------------- selection


def select_kept(scores: torch.Tensor, k: int, *, name: str = "scores") -> torch.Tensor:
    """Indices of the top-``k`` scores, ascending; ties go to the lower index.

    NaN scores are an error (a descending sort would rank them first, keeping exactly the
    neurons whose weights are broken); ``name`` says whose scores in the message.
    """
    if scores.dim() != 1 or not 1 <= k <= scores.numel():
        raise ValueError(f"{name}: need a 1-D tensor and 1 <= k <= its length, got shape "
                         f"{tuple(scores.shape)} and k={k}")
    nan = int(torch.isnan(scores).sum())
    if nan:
        raise ValueError(f"{name}: {nan} of {scores.numel()} importance scores are NaN "
                         f"(NaN or inf weights?); nothing was pruned")
    # A stable descending sort keeps equal scores in index order, so lower indices win ties.
    order = torch.sort(scores, descending=True, stable=True).indices
    return torch.sort(order[:k]).values


# ---------------------------------------------------------------- surgery


def _slice_linear(lin: nn.Linear, idx: torch.Tensor, dim: int) -> None:
    """Keep ``idx`` along ``dim`` of ``lin.weight`` (0 = output rows, 1 = input columns)."""
    idx = idx.to(lin.weight.device)
    with torch.no_grad():  # index_select already copies: no clone() (one copy, not two)
        lin.weight = nn.Parameter(lin.weight.index_select(dim, idx),
                                  requires_grad=lin.weight.requires_grad)
        if dim == 0 and lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias.index_select(0, idx),
                                    requires_grad=lin.bias.requires_grad)
    if dim == 0:
        lin.out_features = len(idx)
    else:
        lin.in_features = len(idx)


def slice_mlp(mlp: nn.Module, idx: torch.Tensor) -> None:
    """Keep neurons ``idx`` of one GLU MLP in place (gate/up rows, down columns)."""
    _slice_linear(mlp.gate_proj, idx, 0)
    _slice_linear(mlp.up_proj, idx, 0)
    _slice_linear(mlp.down_proj, idx, 1)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = len(idx)


# ---------------------------------------------------------------- report


@dataclass
class PruneReport:
    """What one pruning call did."""

    method: str
    pct: float  # percentage of neurons actually removed per layer
    intermediate_size_before: int
    intermediate_size_after: int
    hidden_size: int
    total_params_before: int
    total_params_after: int
    mlp_params_before: int
    mlp_params_after: int
    round_to: int = 1
    seed: int = 0
    kept_indices: list[list[int]] = field(default_factory=list, repr=False)

    @property
    def expansion_ratio_before(self) -> float:
        return self.intermediate_size_before / self.hidden_size

    @property
    def expansion_ratio_after(self) -> float:
        return self.intermediate_size_after / self.hidden_size

    @property
    def params_removed_pct(self) -> float:
        return 100.0 * (1 - self.total_params_after / self.total_params_before)

    def to_dict(self, *, with_indices: bool = True) -> dict[str, Any]:
        """JSON-ready dict (ratios included); kept indices optional (they are large)."""
        d = asdict(self)
        if not with_indices:
            d.pop("kept_indices")
        d.update(expansion_ratio_before=self.expansion_ratio_before,
                 expansion_ratio_after=self.expansion_ratio_after,
                 params_removed_pct=self.params_removed_pct)
        return d


def count_params(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _mlp_params(mlps: list[nn.Module]) -> int:
    return sum(count_params(m) for m in mlps)


# ---------------------------------------------------------------- the public call


def plan_pruning(model: nn.Module, *, pct: float | None = None,
                 expansion_ratio: float | None = None, method: str = "maw",
                 round_to: int = 1, seed: int = 0) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """Validate and choose kept indices per layer without touching the model."""
    get_scorer(method)  # unknown method fails before any work
    mlps = glu_mlps(model)
    n = intermediate_size_of(mlps)
    hidden = getattr(model.config, "hidden_size", mlps[0].gate_proj.in_features)
    k = kept_count(n, pct=pct, expansion_ratio=expansion_ratio, hidden_size=hidden,
                   round_to=round_to)
    names = {id(m): name for name, m in model.named_modules()}  # errors name the layer
    kept = [select_kept(score(m, method, layer=i, seed=seed), k,
                        name=f"layer {i} ({names.get(id(m), '?')}), {method}")
            for i, m in enumerate(mlps)]
    return mlps, kept


def prune_glu_mlp(model: nn.Module, *, pct: float | None = None,
                  expansion_ratio: float | None = None, method: str = "maw",
                  round_to: int = 1, seed: int = 0) -> PruneReport:
    """Prune every decoder layer's GLU MLP in place to the same kept count ``k``.

    Exactly one of ``pct`` (0 <= pct < 100) or ``expansion_ratio`` (target
    intermediate/hidden, below the current one). All validation and scoring happen
    before the first change, so a failed call leaves the model as it was. Peak extra
    memory is one layer's MLP.
    """
    mlps, kept = plan_pruning(model, pct=pct, expansion_ratio=expansion_ratio,
                              method=method, round_to=round_to, seed=seed)
    n, k = mlps[0].gate_proj.out_features, len(kept[0])
    hidden = getattr(model.config, "hidden_size", mlps[0].gate_proj.in_features)
    total_before, mlp_before = count_params(model), _mlp_params(mlps)
    if k < n:
        for mlp, idx in zip(mlps, kept):
            slice_mlp(mlp, idx)
        model.config.intermediate_size = k
    report = PruneReport(method=method, pct=pct_of(n, k), intermediate_size_before=n,
                         intermediate_size_after=k, hidden_size=hidden,
                         total_params_before=total_before, total_params_after=count_params(model),
                         mlp_params_before=mlp_before, mlp_params_after=_mlp_params(mlps),
                         round_to=round_to, seed=seed,
                         kept_indices=[idx.tolist() for idx in kept])
    LOG.info("pruned %d layers with %s: intermediate %d -> %d (%.2f%% of parameters removed)",
             len(mlps), method, n, k, report.params_removed_pct)
    return report
