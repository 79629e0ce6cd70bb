"""Perf variants built by the suite's variant cache (local weights, else random
weights of the exact shape).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from glu_prune.core.arithmetic import ideal_decode_between, ideal_prefill_between
from glu_prune.core.placement import Placement
from glu_prune.core.variants import BuiltVariant, VariantCache
from glu_prune.performance.settings import PerfVariant


# ---------------------------------------------------------------- models


@dataclass
class PerfModel(BuiltVariant):
    """A built variant with the perf axes (depth, dtype, shape) it was built for."""

    variant: PerfVariant | None = None  # always given; a default only because it comes last

    def ideal_prefill(self, prompt_len: int) -> float:
        """The FLOP-ideal prefill speedup over the unpruned model, from the two configs
        (so fewer layers and per-layer widths count as built)."""
        return ideal_prefill_between(self.base_config, self.config, prompt_len)

    def ideal_decode(self) -> float:
        """The weight-byte-ideal decode speedup over the unpruned model."""
        return ideal_decode_between(self.base_config, self.config)


class PerfModels:
    """Perf variants, built by the suite's ``VariantCache`` with local weights when they are
    on disk and random weights of the exact shape otherwise (the hub is never asked)."""

    def __init__(self, device: str, dtype: torch.dtype, model_dir: str | None = None,
                 placement: Placement | None = None, stream_dir: str | None = None):
        self.cache = VariantCache(device=device, dtype=dtype, weights="local",
                                  model_dir=model_dir, placement=placement,
                                  stream_dir=stream_dir)
        self._level_zero: PerfModel | None = None

    def get(self, v: PerfVariant) -> PerfModel:
        """The built variant ``v`` (reused when it is the current one)."""
        built = self.cache.get(v.id, num_layers=v.layers)
        return PerfModel(**{f.name: getattr(built, f.name) for f in fields(BuiltVariant)},
                         variant=v)

    def level_zero(self, v: PerfVariant) -> PerfModel:
        """The unpruned model of ``v``'s shape and depth, resident beside ``v``.

        Level 0 is the cache's base model itself, so holding it costs no memory; it is
        built once per model and depth.
        """
        ref = v.reference
        if self._level_zero is None or self._level_zero.variant.key != ref.key:
            self._level_zero = None  # let the previous model's base go first
            self._level_zero = self.get(ref)
        return self._level_zero
