"""Equal-parameter matching of shapes, from a config alone (no weights, no model memory).

For a width level (pct, round_to) the parameter count is the uniform-width one
(:func:`glu_prune.core.arithmetic.config_param_count`). The depth variant that matches it
removes the number of whole layers whose count comes closest; the global-width variant
keeps the same total neurons, so it matches exactly. :func:`shape_variants` turns a width
variant matrix into the matrix of the requested shapes.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from glu_prune.catalog.families import family_of
from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import config_param_count, kept_count
from glu_prune.core.mlps import decoder_layers
from glu_prune.core.shapes import check_method, uses_calibration
from glu_prune.core.variants import SHAPES, CalibrationFor, VariantId

ConfigOf = Callable[[str], Any]  # model name -> its transformers config


@functools.lru_cache(maxsize=64)
def _layer_counts(config_json: str) -> tuple[int, ...]:
    """Unique parameters of each decoder layer, counted on a ``meta``-device model."""
    data = json.loads(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return tuple(sum(p.numel() for p in {id(p): p for p in layer.parameters()}.values())
                 for layer in decoder_layers(model))


def layer_param_counts(config: Any) -> list[int]:
    """Parameters of each decoder layer of ``config`` (any supported family)."""
    family_of(config)  # an unsupported family fails here, naming the supported ones
    return list(_layer_counts(config.to_json_string(use_diff=False)))


def depth_param_count(config: Any, layers: int) -> int:
    """Total parameters after removing ``layers`` whole decoder layers.

    Exact when the layers are the same size (every supported family's are); layers of
    different sizes make the count depend on which go, so that is an error."""
    counts = layer_param_counts(config)
    if len(set(counts)) != 1:
        raise ValueError(f"decoder layers differ in size ({sorted(set(counts))}): the "
                         f"parameter count of a depth variant depends on which layers go")
    if not 0 <= layers < len(counts):
        raise ValueError(f"layers {layers!r} out of range: remove 0..{len(counts) - 1} "
                         f"of {len(counts)} layers")
    return config_param_count(config) - layers * counts[0]


def width_param_count(config: Any, pct: float, round_to: int = 1) -> int:
    """Total parameters of the uniform-width variant at ``pct`` (and the global-width one:
    the same total neurons)."""
    n = family_of(config).width(config)
    return config_param_count(config, kept_count(n, pct=pct, round_to=round_to))


def closest_depth(config: Any, pct: float, round_to: int = 1) -> int:
    """The number of layers (1 .. L-1) whose removal leaves the parameter count closest
    to the width variant's at ``pct``; on a tie, the fewer layers."""
    target = width_param_count(config, pct, round_to)
    total = len(layer_param_counts(config))
    return min(range(1, total),
               key=lambda n: (abs(depth_param_count(config, n) - target), n))


def shape_variants(width: Sequence[VariantId], shapes: Sequence[str],
                   depth_methods: Sequence[str], calibration: CalibrationFor,
                   config_of: ConfigOf = make_config) -> list[VariantId]:
    """The variants of ``shapes`` matched to the width matrix ``width``.

    Level 0 always stays (every shape's changes are measured against it); the width
    variants above it stay when ``width`` is a requested shape. Per width variant above
    level 0: the global-width variant of the same method, level and rounding, and per
    depth method the depth variant with the closest parameter count (one variant however
    many levels match it)."""
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"shape {unknown[0]!r} is not one of {', '.join(SHAPES)}")
    for m in depth_methods:
        check_method("depth", m)
    out = [v for v in width if v.is_base or "width" in shapes]
    for v in (v for v in width if not v.is_base):
        if "global" in shapes:
            out.append(VariantId(v.model, v.method, v.pct, v.round_to, v.calibration,
                                 shape="global"))
        if "depth" in shapes:
            n = closest_depth(config_of(v.model), v.pct, v.round_to)
            for m in depth_methods:
                tag = calibration(v.model).tag if uses_calibration("depth", m) else ""
                out.append(VariantId(v.model, m, 0.0, 1, tag, shape="depth", layers=n))
    return list(dict.fromkeys(out))  # first occurrence of each, in order
