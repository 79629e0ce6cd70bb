"""GLU width pruning: neuron selection and surgery.

Neuron j of a layer is row j of ``gate_proj`` and ``up_proj`` and column j of
``down_proj``. Pruning keeps the same ``k`` neurons-per-layer count everywhere, slices
those three matrices and sets ``config.intermediate_size = k``. Nothing else changes,
except for bias-compensated methods (``flap``): their removed neurons' mean output becomes
``down_proj``'s bias first (:mod:`glu_prune.core.compensate`).

Calibration-based methods score from per-layer statistics (``stats=``, one
:class:`~glu_prune.core.calibration.LayerStats` per GLU layer, from
:func:`glu_prune.core.calibration.calibrate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from glu_prune.core.arithmetic import kept_count, pct_of
from glu_prune.core.calibration import LayerStats
from glu_prune.core.compensate import add_bias_compensation, check_bias_expressible
from glu_prune.core.importance import (BIAS_COMPENSATED, CALIBRATED_SCORERS, get_scorer,
                                       needs_calibration, score)
from glu_prune.core.mlps import (down_linear, glu_mlps, intermediate_size_of, row_index,
                                 row_linears, set_layer_widths, width_of)

__all__ = ["PruneReport", "apply_kept", "count_params", "count_params_of", "glu_mlps",
           "intermediate_size_of", "layer_scores", "plan_pruning", "prune_glu_mlp", "select_kept", "slice_mlp"]

LOG = logging.getLogger(__name__)


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
    """Keep neurons ``idx`` of one GLU MLP in place (gate/up rows, down columns; a fused
    gate_up keeps rows ``idx`` of both halves)."""
    rows = row_index(mlp, idx)
    down = down_linear(mlp)
    for lin in row_linears(mlp):
        _slice_linear(lin, rows, 0)
    _slice_linear(down, idx, 1)
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
    # whether down_proj got the removed neurons' mean output as its bias (flap)
    compensated: bool = False
    # the calibration data's CalibrationSettings.tag (None: weight-only, or bare batches)
    calibration: str | None = None
    # every layer's kept width when they differ (then intermediate_size_after is their
    # rounded mean and pct the share of all neurons removed); None when uniform
    layer_widths: list[int] | None = None

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
        # weight-only reports read as they did before these fields existed
        for key, default in (("compensated", False), ("calibration", None),
                             ("layer_widths", None)):
            if d[key] == default:
                d.pop(key)
        d.update(expansion_ratio_before=self.expansion_ratio_before,
                 expansion_ratio_after=self.expansion_ratio_after,
                 params_removed_pct=self.params_removed_pct)
        return d


def count_params(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def count_params_of(modules: Sequence[nn.Module]) -> int:
    """Parameters of ``modules`` together (each module's unique ones)."""
    return sum(count_params(m) for m in modules)


# ---------------------------------------------------------------- the public call


def _check_stats(method: str, stats: Sequence[LayerStats] | None, mlps: list[nn.Module],
                 n: int) -> None:
    """``stats`` fits ``method`` and the model: one finite, non-empty entry per layer of width n."""
    if not needs_calibration(method):
        if stats is not None:
            raise ValueError(f"importance method {method!r} is weight-only and does not use "
                             f"calibration data, but stats were given; drop stats= or use a "
                             f"calibration-based method: {', '.join(sorted(CALIBRATED_SCORERS))}")
        return
    if stats is None:
        raise ValueError(f"importance method {method!r} is calibration-based and needs "
                         f"calibration statistics: pass stats=calibrate(model, tokenizer, "
                         f"settings) (glu_prune.core.calibration), one LayerStats per layer")
    if isinstance(stats, LayerStats) or len(stats) != len(mlps):
        got = "one LayerStats" if isinstance(stats, LayerStats) else f"{len(stats)}"
        raise ValueError(f"need calibration statistics for each of the {len(mlps)} GLU layers, "
                         f"got {got}")
    for i, s in enumerate(stats):
        if not isinstance(s, LayerStats):
            raise TypeError(f"layer {i}: calibration statistics must be a LayerStats, got "
                            f"{type(s).__name__}")
        if s.intermediate_size != n:
            raise ValueError(f"layer {i}: calibration statistics are for {s.intermediate_size} "
                             f"neurons, but the layer has {n}: collect them on the model being "
                             f"pruned, before pruning")
        if s.tokens < 1:
            raise ValueError(f"layer {i}: calibration statistics saw no tokens")
        if not all(bool(torch.isfinite(t).all()) for t in s.tensors()):
            raise ValueError(f"layer {i}: calibration statistics contain NaN or inf; "
                             f"recalibrate")


def layer_scores(model: nn.Module, method: str = "maw", *, seed: int = 0,
                 stats: Sequence[LayerStats] | None = None,
                 ) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """Validate, then score every GLU layer's neurons (one score per neuron, per layer).

    ``stats``: one :class:`LayerStats` per GLU layer, required by calibration-based methods
    and refused by weight-only ones.
    """
    get_scorer(method)  # unknown method fails before any work
    if method in BIAS_COMPENSATED:
        check_bias_expressible(model.config)
    mlps = glu_mlps(model)
    _check_stats(method, stats, mlps, intermediate_size_of(mlps))
    per_layer = stats if stats is not None else [None] * len(mlps)
    return mlps, [score(m, method, layer=i, seed=seed, stats=s)
                  for i, (m, s) in enumerate(zip(mlps, per_layer))]


def layer_names(model: nn.Module, mlps: Sequence[nn.Module], method: str) -> list[str]:
    """``layer i (model.layers.i.mlp), method`` per MLP: what selection errors name."""
    names = {id(m): name for name, m in model.named_modules()}
    return [f"layer {i} ({names.get(id(m), '?')}), {method}" for i, m in enumerate(mlps)]


def plan_pruning(model: nn.Module, *, pct: float | None = None,
                 expansion_ratio: float | None = None, method: str = "maw",
                 round_to: int = 1, seed: int = 0, stats: Sequence[LayerStats] | None = None,
                 ) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """Validate and choose kept indices per layer (the same count everywhere) without
    touching the model."""
    get_scorer(method)
    mlps = glu_mlps(model)
    n = intermediate_size_of(mlps)
    hidden = getattr(model.config, "hidden_size", down_linear(mlps[0]).out_features)
    k = kept_count(n, pct=pct, expansion_ratio=expansion_ratio, hidden_size=hidden,
                   round_to=round_to)  # a bad level fails before scoring
    mlps, scores = layer_scores(model, method, seed=seed, stats=stats)
    return mlps, [select_kept(s, k, name=name)
                  for s, name in zip(scores, layer_names(model, mlps, method))]


def _calibration_tag(stats: Sequence[LayerStats] | None) -> str | None:
    """The data's tag when every layer's statistics carry the same one."""
    tags = {s.tag for s in stats or ()}
    return tags.pop() if len(tags) == 1 else None


def prune_glu_mlp(model: nn.Module, *, pct: float | None = None,
                  expansion_ratio: float | None = None, method: str = "maw",
                  round_to: int = 1, seed: int = 0,
                  stats: Sequence[LayerStats] | None = None) -> PruneReport:
    """Prune every decoder layer's GLU MLP in place to the same kept count ``k``.

    Exactly one of ``pct`` (0 <= pct < 100) or ``expansion_ratio`` (target
    intermediate/hidden, below the current one). Calibration-based methods (``act``,
    ``wanda_sp``, ``flap``, ``maw_hybrid``) need ``stats``, one :class:`LayerStats` per GLU
    layer collected on this model (:func:`glu_prune.core.calibration.calibrate`); weight-only
    methods refuse them. Bias-compensated methods (``flap``) also set ``down_proj``'s bias
    to the removed neurons' mean output. All validation and scoring happen before the first
    change, so a failed call leaves the model as it was. Peak extra memory is one layer's MLP.
    """
    mlps, kept = plan_pruning(model, pct=pct, expansion_ratio=expansion_ratio, method=method,
                              round_to=round_to, seed=seed, stats=stats)
    return apply_kept(model, mlps, kept, method=method, round_to=round_to, seed=seed,
                      stats=stats)


def apply_kept(model: nn.Module, mlps: list[nn.Module], kept: Sequence[torch.Tensor], *,
               method: str, round_to: int = 1, seed: int = 0,
               stats: Sequence[LayerStats] | None = None) -> PruneReport:
    """Keep neurons ``kept[i]`` of layer ``i`` (compensating first for ``flap``), set the
    config's width, and report. Equal counts set the family's width field; unequal ones
    leave it at the widest layer's size and record every layer's width in
    :data:`LAYER_WIDTHS_FIELD` (see :mod:`glu_prune.core.nonuniform`)."""
    n = width_of(mlps[0])
    widths = [len(idx) for idx in kept]
    hidden = getattr(model.config, "hidden_size", down_linear(mlps[0]).out_features)
    total_before, mlp_before = count_params(model), count_params_of(mlps)
    # nothing removed, nothing to stand in for: no bias (the architecture stays as it was)
    compensated = method in BIAS_COMPENSATED and sum(widths) < n * len(mlps)
    if compensated:
        add_bias_compensation(model, kept, [s.mean for s in stats])
    for mlp, idx in zip(mlps, kept):
        if len(idx) < n:
            slice_mlp(mlp, idx)
    uniform = len(set(widths)) == 1
    set_layer_widths(model.config, widths)
    k = widths[0] if uniform else round(sum(widths) / len(widths))
    report = PruneReport(method=method, pct=pct_of(n * len(widths), sum(widths)),
                         intermediate_size_before=n, intermediate_size_after=k,
                         hidden_size=hidden, total_params_before=total_before,
                         total_params_after=count_params(model), mlp_params_before=mlp_before,
                         mlp_params_after=count_params_of(mlps), round_to=round_to, seed=seed,
                         kept_indices=[idx.tolist() for idx in kept], compensated=compensated,
                         calibration=_calibration_tag(stats),
                         layer_widths=None if uniform else widths)
    LOG.info("pruned %d layers with %s%s: intermediate %d -> %s (%.2f%% of parameters removed)",
             len(mlps), method, " (bias-compensated)" if compensated else "", n,
             k if uniform else f"{min(widths)}..{max(widths)}", report.params_removed_pct)
    return report
