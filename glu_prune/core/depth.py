"""Depth pruning: which whole decoder layers to remove (scoring) and removing them (surgery).

Selection methods (registry ``LAYER_METHODS``):

- ``last`` / ``first``: the last / first *n* layers (optipfair's ``prune_model_depth``).
- ``bi``: ShortGPT's Block Influence, ``1 - mean cos(x_in, x_out)`` of each layer over the
  calibration tokens; the *n* lowest go.
- ``angular``: Gromov et al.'s angular distance ``arccos(cos(x_l, x_{l+n})) / pi`` between
  the input of layer *l* and the output of layer *l+n-1*, averaged over the calibration
  tokens; the contiguous block with the smallest distance goes.

Scores come from hooks on the decoder layers (their input and output hidden states), so
they never depend on how a family's ``output_hidden_states`` treats the final norm.
:func:`remove_layers` then shortens the layer list, renumbers every ``layer_idx`` (the KV
cache indexes by it), and keeps the config's per-layer lists aligned with what remains.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from glu_prune.catalog.families import family_of
from glu_prune.catalog.registry import Registry
from glu_prune.core.mlps import check_layer_indices, decoder_layers

LOG = logging.getLogger(__name__)

# Config fields counting "the first k layers" (Qwen2: sliding window from this layer on);
# recounted over the kept layers so the same layers keep their attention kind.
_LAYER_COUNT_FIELDS = ("max_window_layers",)


def check_removal(removed: Sequence[int], num_layers: int) -> list[int]:
    """``removed`` as a sorted list; one-line ``ValueError`` when it is empty, removes every
    layer, repeats an index or names one outside ``0..num_layers-1``."""
    items = check_layer_indices(removed, num_layers, "remove")
    if len(set(items)) >= num_layers:
        raise ValueError(f"cannot remove all {num_layers} layers: keep at least one")
    return sorted(items)


# ---------------------------------------------------------------- scoring


def _first_tensor(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


def boundary_states(model: nn.Module, batch: torch.Tensor) -> list[torch.Tensor]:
    """Hidden states at every layer boundary for one batch: the input of layer 0, then each
    layer's output (``L + 1`` tensors of ``[batch, seq, hidden]``, float32)."""
    layers = decoder_layers(model)
    states: list[torch.Tensor] = []

    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        if not states:
            hs = args[0] if args else kwargs["hidden_states"]
            states.append(hs.detach().float())

    def post(_m: nn.Module, _args: tuple, out: Any) -> None:
        states.append(_first_tensor(out).detach().float())

    handles = [layers[0].register_forward_pre_hook(pre, with_kwargs=True)]
    handles += [layer.register_forward_hook(post) for layer in layers]
    try:
        with torch.no_grad():
            model(input_ids=batch.to(next(model.parameters()).device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return states


def _mean_cos(model: nn.Module, batches: Sequence[torch.Tensor], gap: int) -> torch.Tensor:
    """cos(state_l, state_{l+gap}) for every l: the mean over each batch's tokens, then over
    batches (float64; calibration batches are equal-sized, so this is the token mean)."""
    if not batches:
        raise ValueError("no calibration batches: depth scoring needs at least one")
    per_batch = []
    for batch in batches:
        st = boundary_states(model, batch)
        per_batch.append(torch.stack([
            nn.functional.cosine_similarity(st[i], st[i + gap], dim=-1).double().mean()
            for i in range(len(st) - gap)]))
    return torch.stack(per_batch).mean(dim=0)


def block_influence(model: nn.Module, batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """ShortGPT's Block Influence of each layer: ``1 - mean cos(input, output)``."""
    return 1.0 - _mean_cos(model, batches, 1)


def layer_cosine(model: nn.Module, batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each layer's mean cosine similarity between its input and output hidden states."""
    return _mean_cos(model, batches, 1)


def angular_distances(model: nn.Module, batches: Sequence[torch.Tensor],
                      n: int) -> torch.Tensor:
    """Gromov et al.'s angular distance of every block of ``n`` layers starting at l:
    ``arccos(mean cos(x_l, x_{l+n})) / pi``; entry l is the block ``l..l+n-1``."""
    cos = _mean_cos(model, batches, n).clamp(-1.0, 1.0)
    return torch.arccos(cos) / math.pi


# ---------------------------------------------------------------- selection

Selector = Callable[[nn.Module, int, Sequence[torch.Tensor]], list[int]]


def _last(model: nn.Module, n: int, _b: Sequence[torch.Tensor]) -> list[int]:
    total = len(decoder_layers(model))
    return list(range(total - n, total))


def _first(_model: nn.Module, n: int, _b: Sequence[torch.Tensor]) -> list[int]:
    return list(range(n))


def _bi(model: nn.Module, n: int, batches: Sequence[torch.Tensor]) -> list[int]:
    scores = block_influence(model, batches)
    return sorted(torch.argsort(scores, stable=True)[:n].tolist())


def _angular(model: nn.Module, n: int, batches: Sequence[torch.Tensor]) -> list[int]:
    start = int(torch.argmin(angular_distances(model, batches, n)))
    return list(range(start, start + n))


LAYER_METHODS: Registry[Selector] = Registry("layer selection method", (
    ("last", _last), ("first", _first), ("bi", _bi), ("angular", _angular)))
DATA_METHODS = frozenset({"bi", "angular"})  # need calibration batches


def select_layers(model: nn.Module, n: int, method: str,
                  batches: Sequence[torch.Tensor] = ()) -> list[int]:
    """The ``n`` layer indices (sorted) that ``method`` removes."""
    total = len(decoder_layers(model))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < total:
        raise ValueError(f"depth {n!r} out of range: remove 1..{total - 1} of {total} layers")
    selector = LAYER_METHODS[method]
    if method in DATA_METHODS and not batches:
        raise ValueError(f"layer method {method!r} needs calibration batches")
    return check_removal(selector(model, n, batches), total)


# ---------------------------------------------------------------- surgery


def _align_config(config: Any, kept: list[int], total: int) -> None:
    for name in family_of(config).per_layer_lists:
        values = getattr(config, name, None)
        if values is not None:
            if len(values) != total:
                raise ValueError(f"config.{name} has {len(values)} entries for {total} layers")
            setattr(config, name, [values[i] for i in kept])
    for name in _LAYER_COUNT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(config, name, sum(1 for i in kept if i < value))
    config.num_hidden_layers = len(kept)


def remove_layers(model: nn.Module, removed: Sequence[int]) -> list[int]:
    """Remove decoder layers ``removed`` from ``model`` in place; returns the kept indices.

    The model stays a plain transformers model: shorter layer list, ``layer_idx`` of every
    module renumbered, ``num_hidden_layers`` and per-layer config lists updated."""
    layers = decoder_layers(model)
    total = len(layers)
    gone = set(check_removal(removed, total))
    kept = [i for i in range(total) if i not in gone]
    new = nn.ModuleList([layers[i] for i in kept])
    for new_idx, layer in enumerate(new):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_idx
    parent: Any = model
    path = family_of(model.config).layers.split(".")
    for part in path[:-1]:
        parent = getattr(parent, part)
    setattr(parent, path[-1], new)
    _align_config(model.config, kept, total)
    return kept


def prune_depth(model: nn.Module, *, n: int | None = None, method: str = "last",
                removed: Sequence[int] | None = None,
                batches: Sequence[torch.Tensor] = ()) -> dict[str, Any]:
    """Remove ``n`` layers chosen by ``method`` (or exactly ``removed``) from ``model`` in
    place; returns a report (method, layers before/after, removed, kept, params)."""
    if (n is None) == (removed is None):
        raise ValueError("give a depth n or the removed layer indices, not both")
    before = sum(p.numel() for p in model.parameters())
    total = len(decoder_layers(model))
    if removed is None:
        removed = select_layers(model, n, method, batches)
        LOG.info("depth %s: removing layers %s of %d", method, removed, total)
    else:
        method = "custom"
    removed = check_removal(removed, total)
    kept = remove_layers(model, removed)
    after = sum(p.numel() for p in model.parameters())
    return {"shape": "depth", "method": method, "layers_before": total,
            "layers_after": len(kept), "removed_layers": removed, "kept_layers": kept,
            "params_before": before, "params_after": after,
            "params_removed_pct": 100.0 * (before - after) / before}
