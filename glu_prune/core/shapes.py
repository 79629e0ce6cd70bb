"""Pruning shapes: one builder per shape, by name (``SHAPE_BUILDERS``), each turning a
copy of the base model into a variant of ``VariantId.shape`` and returning its report.

- ``width``: the same neurons kept in every layer (:func:`glu_prune.core.prune.prune_glu_mlp`).
- ``depth``: whole decoder layers removed (:func:`glu_prune.core.depth.prune_depth`); the
  report is a :class:`DepthReport`, which also names the removed layers.
- ``global``: widths allocated over all layers by one threshold, the same total as
  ``width`` at the level (:func:`glu_prune.core.nonuniform.prune_global`).

Builders take the data they may need lazily (:class:`ShapeInputs`), so a weight-only
variant never collects calibration statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import torch

from glu_prune.catalog.registry import Registry
from glu_prune.core.calibration import LayerStats
from glu_prune.core.depth import DATA_METHODS, LAYER_METHODS, prune_depth
from glu_prune.core.importance import get_scorer, needs_calibration
from glu_prune.core.mlps import down_linear, glu_mlps
from glu_prune.core.nonuniform import prune_global
from glu_prune.core.prune import (PruneReport, count_params_of, intermediate_size_of,
                                  prune_glu_mlp)

if TYPE_CHECKING:
    from glu_prune.core.variants import VariantId


@dataclass
class DepthReport(PruneReport):
    """What one depth pruning did: a :class:`PruneReport` (widths unchanged, pct 0) plus
    the layers before and after and the removed layers' indices in the unpruned model."""

    layers_before: int = 0
    layers_after: int = 0
    removed_layers: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ShapeInputs:
    """What a builder may ask for, each computed only when asked: the calibration
    statistics of the base model (width methods) and its calibration token batches
    (depth methods)."""

    stats: Callable[[], list[LayerStats]]
    batches: Callable[[], list[torch.Tensor]]


Builder = Callable[[Any, "VariantId", ShapeInputs], PruneReport]


def _width(model: Any, vid: VariantId, inputs: ShapeInputs) -> PruneReport:
    if not needs_calibration(vid.method):
        return prune_glu_mlp(model, pct=vid.pct, method=vid.method, round_to=vid.round_to)
    if vid.pct == 0:
        # Level 0 removes nothing, so no scores (nor data to score by) can matter: the
        # report is any weight-only method's, under the variant's method name.
        report = prune_glu_mlp(model, pct=0, method="maw", round_to=vid.round_to)
        return replace(report, method=vid.method)
    return prune_glu_mlp(model, pct=vid.pct, method=vid.method, round_to=vid.round_to,
                         stats=inputs.stats())


def _depth(model: Any, vid: VariantId, inputs: ShapeInputs) -> DepthReport:
    mlps = glu_mlps(model)
    mlps_before = count_params_of(mlps)
    width, hidden = intermediate_size_of(mlps), down_linear(mlps[0]).out_features
    batches = inputs.batches() if vid.method in DATA_METHODS else ()
    done = prune_depth(model, n=vid.layers, method=vid.method, batches=batches)
    return DepthReport(
        method=vid.method, pct=0.0, intermediate_size_before=width,
        intermediate_size_after=width, hidden_size=hidden,
        total_params_before=done["params_before"], total_params_after=done["params_after"],
        mlp_params_before=mlps_before, mlp_params_after=count_params_of(glu_mlps(model)),
        calibration=vid.calibration or None, layers_before=done["layers_before"],
        layers_after=done["layers_after"], removed_layers=list(done["removed_layers"]))


def _global(model: Any, vid: VariantId, inputs: ShapeInputs) -> PruneReport:
    stats = inputs.stats() if needs_calibration(vid.method) else None
    return prune_global(model, pct=vid.pct, method=vid.method, round_to=vid.round_to,
                        stats=stats)


SHAPE_BUILDERS: Registry[Builder] = Registry("pruning shape", (
    ("width", _width), ("depth", _depth), ("global", _global)))


def build_shape(model: Any, vid: VariantId, inputs: ShapeInputs) -> PruneReport:
    """Prune ``model`` in place into variant ``vid``; its report."""
    return SHAPE_BUILDERS[vid.shape](model, vid, inputs)


def check_method(shape: str, method: str) -> None:
    """``KeyError`` naming the valid ones when ``method`` is no method of ``shape``."""
    if shape == "depth":
        LAYER_METHODS.get(method)
    else:
        get_scorer(method)


def uses_calibration(shape: str, method: str) -> bool:
    """Whether variants of ``shape`` pruned by ``method`` are pruned from calibration data
    (their calibration settings are then part of their identity)."""
    return method in DATA_METHODS if shape == "depth" else needs_calibration(method)


def report_extra(report: PruneReport) -> dict[str, Any]:
    """What a shape's report adds to its records: the removed layers (depth), the widths
    per layer (global)."""
    if isinstance(report, DepthReport):
        return {"removed_layers": list(report.removed_layers),
                "layers_before": report.layers_before, "layers_after": report.layers_after}
    widths = getattr(report, "layer_widths", None)
    return {"layer_widths": list(widths)} if widths else {}
