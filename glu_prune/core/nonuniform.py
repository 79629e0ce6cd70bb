"""Non-uniform widths: GLU pruning that keeps a different number of neurons per layer.

- Selective (optipfair's ``layer_indices``): only the listed layers lose neurons, each the
  uniform count of the level; the others stay intact.
- Global (as FLAP's global mode): every layer's scores are standardised (mean 0, std 1
  within the layer, so layers with larger raw scores do not win by scale), then one
  threshold over all layers keeps the best ``L * k`` neurons - exactly as many as uniform
  pruning at the same level keeps, hence the same parameter count - with at least
  ``min_width`` per layer.

Scoring is :func:`glu_prune.core.prune.layer_scores`, surgery
:func:`glu_prune.core.prune.apply_kept`; this module only decides the per-layer counts.
A saved non-uniform model records its widths in the config
(:data:`glu_prune.core.mlps.LAYER_WIDTHS_FIELD`) and loads with
:func:`load_pruned`; a plain ``from_pretrained`` refuses it (size mismatch).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glu_prune.core.arithmetic import kept_count
from glu_prune.core.calibration import LayerStats
from glu_prune.core.mlps import (check_layer_indices, glu_mlps, intermediate_size_of,
                                 layer_widths, width_of)
from glu_prune.core.shards import shard_files
from glu_prune.core.prune import (PruneReport, apply_kept, layer_names, layer_scores,
                                  select_kept, slice_mlp)

LOG = logging.getLogger(__name__)

# Global allocation's default floor: a tenth of a layer's neurons (FLAP has none; a layer
# cut to a handful of neurons is rarely what anyone wants from a default).
DEFAULT_MIN_FRACTION = 0.1


def prune_selective(model: nn.Module, *, pct: float, layers: Sequence[int],
                    method: str = "maw", round_to: int = 1, seed: int = 0,
                    stats: Sequence[LayerStats] | None = None) -> PruneReport:
    """Prune only ``layers`` (decoder layer indices) to the level's kept count, in place."""
    mlps = glu_mlps(model)
    chosen = set(check_layer_indices(layers, len(mlps)))
    k = kept_count(intermediate_size_of(mlps), pct=pct, round_to=round_to)
    mlps, scores = layer_scores(model, method, seed=seed, stats=stats)
    names = layer_names(model, mlps, method)
    kept = [select_kept(s, k, name=names[i]) if i in chosen else torch.arange(len(s))
            for i, s in enumerate(scores)]
    return apply_kept(model, mlps, kept, method=method, round_to=round_to, seed=seed,
                      stats=stats)


def default_min_width(n: int) -> int:
    """The floor global allocation keeps per layer when none is given."""
    return max(1, math.ceil(DEFAULT_MIN_FRACTION * n))


def allocate_global(scores: Sequence[torch.Tensor], total: int,
                    min_width: int) -> list[torch.Tensor]:
    """Kept indices per layer: each layer's ``min_width`` best, then the best of the rest
    over all layers by standardised score, ``total`` in all. Ties go to the lower layer,
    then the lower index (deterministic)."""
    n, layers = scores[0].numel(), len(scores)
    if not 1 <= min_width <= n:
        raise ValueError(f"min_width must be in 1..{n} (the layer width), got {min_width!r}")
    if min_width * layers > total:
        raise ValueError(f"a minimum width of {min_width} in each of {layers} layers keeps "
                         f"{min_width * layers} neurons, more than the {total} the level "
                         f"keeps: lower the minimum width to at most {total // layers}")
    z = torch.stack([_standardised(s) for s in scores])  # [layers, n]
    order = torch.sort(z, dim=1, descending=True, stable=True).indices
    floor = torch.zeros_like(z, dtype=torch.bool)
    floor.scatter_(1, order[:, :min_width], True)
    rest = z.masked_fill(floor, float("-inf")).flatten()  # row-major: layer, then index
    extra = torch.sort(rest, descending=True, stable=True).indices[:total - min_width * layers]
    keep = floor.flatten()
    keep[extra] = True
    keep = keep.view(layers, n)
    return [torch.nonzero(row).flatten() for row in keep]


def _standardised(s: torch.Tensor) -> torch.Tensor:
    """(s - mean) / std within one layer; a constant layer scores 0 everywhere."""
    s = s.double()
    std = s.std(unbiased=False)
    return (s - s.mean()) / std if std > 0 else torch.zeros_like(s)


def prune_global(model: nn.Module, *, pct: float, method: str = "maw",
                 min_width: int | None = None, round_to: int = 1, seed: int = 0,
                 stats: Sequence[LayerStats] | None = None) -> PruneReport:
    """Prune all layers to per-layer widths chosen by one global threshold, in place.

    Keeps exactly ``L * kept_count(n, pct)`` neurons (uniform pruning's total, so the same
    parameter count), at least ``min_width`` per layer (default: a tenth of ``n``).
    ``round_to`` applies to that total only (widths are not rounded per layer)."""
    mlps = glu_mlps(model)
    n = intermediate_size_of(mlps)
    total = len(mlps) * kept_count(n, pct=pct, round_to=round_to)
    floor = default_min_width(n) if min_width is None else min_width
    if isinstance(floor, bool) or not isinstance(floor, int):
        raise ValueError(f"min_width must be an integer, got {floor!r}")
    mlps, scores = layer_scores(model, method, seed=seed, stats=stats)
    if any(bool(torch.isnan(s).any()) for s in scores):
        for s, name in zip(scores, layer_names(model, mlps, method)):
            select_kept(s, 1, name=name)  # raises, naming the first layer with NaN scores
    kept = allocate_global(scores, total, floor)
    return apply_kept(model, mlps, kept, method=method, round_to=round_to, seed=seed,
                      stats=stats)


# ---------------------------------------------------------------- loading


def load_pruned(folder: str | os.PathLike, *, dtype: Any = None, config: Any = None
                ) -> nn.Module:
    """A saved model folder as a CausalLM, each layer at the width its config records.

    A folder without :data:`~glu_prune.core.mlps.LAYER_WIDTHS_FIELD` loads with plain
    ``from_pretrained``. Otherwise the model is built from its config, each MLP narrowed to
    its layer's width, and the safetensors loaded strictly: a tensor of the wrong shape, an
    unexpected one or a missing one (other than a tied output embedding) is an error, so
    no weight is ever left random. ``dtype``: default the config's; ``config``: the folder's
    own, already read (and checked) by the caller.
    """
    from transformers import AutoConfig, AutoModelForCausalLM  # heavy: only when loading

    config = config if config is not None else AutoConfig.from_pretrained(folder)
    widths = layer_widths(config)
    if widths is None:
        return AutoModelForCausalLM.from_pretrained(folder, config=config,
                                                    dtype=dtype or "auto").eval()
    dtype = dtype or getattr(config, "dtype", None) or torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    mlps = glu_mlps(model)
    if len(widths) != len(mlps):
        raise ValueError(f"{folder}: config records {len(widths)} layer widths for "
                         f"{len(mlps)} layers (a model with per-layer widths loads whole, "
                         f"never cut to fewer layers)")
    for i, (mlp, w) in enumerate(zip(mlps, widths)):
        if not 1 <= w <= width_of(mlp):
            raise ValueError(f"{folder}: layer {i} width {w} outside 1..{width_of(mlp)}")
        if w < width_of(mlp):
            slice_mlp(mlp, torch.arange(w))
    _load_state(model, Path(folder))
    LOG.info("loaded %s with per-layer MLP widths %d..%d", folder, min(widths), max(widths))
    return model.eval()


def _load_state(model: nn.Module, folder: Path) -> None:
    """Every tensor of ``folder``'s shards into ``model``, strictly (tied weights aside)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in shard_files(folder):
        state.update(load_file(str(path)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in state if k in params}
    untied = [k for k in missing if k not in params or params[k].data_ptr() not in loaded]
    if untied or unexpected:
        raise ValueError(f"{folder}: weights do not match the model its config describes "
                         f"(missing {untied[:3]}, unexpected {unexpected[:3]})")
