"""Streaming activation statistics for data-driven neuron scores.

:func:`collect_stats` runs the model over token batches with a forward pre-hook on every
``mlp.down_proj`` and folds each batch's input ``h`` (``silu(gate) * up``, shape [batch,
seq, d_ff]) into a fixed set of per-neuron sums, then drops it. Memory is O(d_ff) per layer
however many batches run: activations are never stored. :func:`calibrate` does the same
from :class:`~glu_prune.core.calibration_data.CalibrationSettings` (the batches come from
:mod:`glu_prune.core.calibration_data`).

The statistics feed :mod:`glu_prune.core.importance`'s calibration-based scorers,
:mod:`glu_prune.core.compensate`'s bias and ``prune_glu_mlp(..., stats=...)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from glu_prune.core.calibration_data import CalibrationSettings, calibration_batches
from glu_prune.core.mlps import down_linear, glu_mlps, width_of

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class LayerStats:
    """Per-neuron statistics of one layer's ``down_proj`` input ``h`` over the calibration data.

    Sums across batches are float64 (a float32 sum of hundreds of thousands of tokens
    keeps too few digits where the terms cancel); ``batch_l2_sum`` stays float32 because
    optipfair accumulates it so.
    """

    tokens: int  # N, tokens seen
    sequences: int
    sum: torch.Tensor  # sum_t h_tj
    sum_abs: torch.Tensor  # sum_t |h_tj|
    sum_sq: torch.Tensor  # sum_t h_tj^2
    m2: torch.Tensor  # sum_t (h_tj - mean_j)^2, merged per batch (Chan et al.): no cancellation
    seq_abs_mean_sq: torch.Tensor  # sum over sequences of (mean_t |h_tj|)^2 (Minitron)
    batch_l2_sum: torch.Tensor  # sum over batches of ||h_{batch, j}||_2 (optipfair's X_d)
    # CalibrationSettings.tag of the data, when known (calibrate sets it; collect_stats,
    # given bare batches, cannot): pruning reports it
    tag: str | None = None

    @property
    def intermediate_size(self) -> int:
        return self.sum.numel()

    @property
    def mean(self) -> torch.Tensor:
        """mean_t h_tj (float64)."""
        return self.sum / self.tokens

    @property
    def var(self) -> torch.Tensor:
        """Population variance over tokens, Var_t h_tj (float64)."""
        return self.m2 / self.tokens

    def tensors(self) -> list[torch.Tensor]:
        """Every per-neuron tensor (each of length d_ff)."""
        return [self.sum, self.sum_abs, self.sum_sq, self.m2, self.seq_abs_mean_sq,
                self.batch_l2_sum]


class Accumulator:
    """Running sums of one layer, updated in place from each batch's ``h``, which is then freed
    (shared by :func:`collect_stats` and the layer-by-layer run of
    :mod:`glu_prune.core.layerwise`, so both compute the same statistics)."""

    def __init__(self, d_ff: int, device: torch.device):
        def zeros(dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.zeros(d_ff, dtype=dtype, device=device)

        self.tokens = 0
        self.sequences = 0
        self.sum, self.sum_abs, self.sum_sq, self.m2 = zeros(), zeros(), zeros(), zeros()
        self.seq_abs_mean_sq = zeros()
        self.batch_l2_sum = zeros(torch.float32)  # float32, accumulated as optipfair does

    @torch.no_grad()
    def update(self, h: torch.Tensor) -> None:
        """Fold one batch ``[batch, seq, d_ff]`` in with reductions only."""
        x = h.detach().float()  # the one h-sized temporary, and none for a float32 model
        b, seq = x.shape[0], x.shape[1]
        n_a, n_b = self.tokens, b * seq
        var_b, mean_b = torch.var_mean(x, dim=(0, 1), correction=0)
        l2 = torch.linalg.vector_norm(x, 2, dim=(0, 1))  # optipfair's per-batch X_d norm
        seq_abs = torch.linalg.vector_norm(x, 1, dim=1).double()  # [batch, d_ff]
        # Chan et al.'s merge of (count, mean, M2): no E[h^2] - E[h]^2 cancellation
        delta = mean_b.double() - (self.sum / n_a if n_a else 0.0)
        self.m2.add_(var_b.double() * n_b + delta.square() * (n_a * n_b / (n_a + n_b)))
        self.sum.add_(mean_b.double() * n_b)
        self.sum_abs.add_(seq_abs.sum(0))
        self.sum_sq.add_(l2.double().square())
        self.seq_abs_mean_sq.add_((seq_abs / seq).square().sum(0))
        self.batch_l2_sum.add_(l2)
        self.tokens += n_b
        self.sequences += b

    def result(self) -> LayerStats:
        """The sums so far, on the CPU."""
        sums = (self.sum, self.sum_abs, self.sum_sq, self.m2, self.seq_abs_mean_sq,
                self.batch_l2_sum)
        return LayerStats(self.tokens, self.sequences, *(t.cpu() for t in sums))


def check_batches(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Token batches must be non-empty 2-D integer tensors of in-vocabulary ids."""
    if len(batches) == 0:
        raise ValueError("no calibration batches: calibration-based methods need data")
    vocab = model.get_input_embeddings().num_embeddings
    max_len = getattr(model.config, "max_position_embeddings", None)
    for i, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2 \
                or batch.dtype.is_floating_point or batch.dtype == torch.bool:
            raise ValueError(f"calibration batch {i} must be a 2-D integer tensor of token ids "
                             f"[batch, seq], got {getattr(batch, 'dtype', type(batch).__name__)} "
                             f"of shape {tuple(getattr(batch, 'shape', ()))}")
        if batch.numel() == 0:
            raise ValueError(f"calibration batch {i} is empty (shape {tuple(batch.shape)})")
        low, high = int(batch.min()), int(batch.max())
        if low < 0 or high >= vocab:
            raise ValueError(f"calibration batch {i} has token ids in [{low}, {high}], outside "
                             f"the model's vocabulary [0, {vocab - 1}]: wrong tokenizer?")
        if max_len is not None and batch.shape[1] > max_len:
            raise ValueError(f"calibration batch {i} has {batch.shape[1]} tokens per sequence; "
                             f"the model takes at most {max_len} (max_position_embeddings)")


@contextlib.contextmanager
def hooked(mlps: list[nn.Module], accs: list[Accumulator]) -> Iterator[None]:
    """Pre-hooks on each ``down_proj`` feeding its input to the accumulator, always removed."""
    handles = [down_linear(m).register_forward_pre_hook(lambda _mod, args, acc=a: acc.update(args[0]))
               for m, a in zip(mlps, accs)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_finite(stats: list[LayerStats], names: list[str], first: int = 0) -> None:
    """NaN or inf activations make every statistic meaningless: name the first bad layer
    (``first``: the index of ``stats[0]``'s layer)."""
    for i, (s, name) in enumerate(zip(stats, names), start=first):
        if not all(bool(torch.isfinite(t).all()) for t in s.tensors()):
            raise ValueError(f"layer {i} ({name}): calibration activations contain NaN or inf "
                             f"(broken weights, or overflow in a low-precision dtype?)")


def collect_stats(model: nn.Module, batches: Sequence[torch.Tensor], *,
                  progress: bool = True) -> list[LayerStats]:
    """Run ``model`` over ``batches`` and return each GLU layer's :class:`LayerStats`.

    The model is not changed: hooks are removed and the train/eval mode restored, whatever
    happens. Bad batches fail before the first forward pass.
    """
    mlps = glu_mlps(model)
    check_batches(model, batches)
    device = next(model.parameters()).device
    accs = [Accumulator(width_of(m), down_linear(m).weight.device) for m in mlps]
    was_training = model.training
    model.eval()
    try:
        with hooked(mlps, accs), torch.no_grad():
            for batch in tqdm(batches, desc="calibration", unit="batch", disable=not progress,
                              mininterval=10):
                # logits of one position only: the hooks need h, not a [tokens, vocab] tensor
                model(input_ids=batch.to(device), use_cache=False, logits_to_keep=1)
    finally:
        model.train(was_training)
    stats = [a.result() for a in accs]
    names = {id(m): n for n, m in model.named_modules()}
    check_finite(stats, [f"{names.get(id(m), '?')}.down_proj" for m in mlps])
    return stats


def calibrate(model: nn.Module, tokenizer: Any, settings: CalibrationSettings, *,
              progress: bool = True) -> list[LayerStats]:
    """Token batches from ``settings`` through ``model``: each GLU layer's statistics."""
    batches = calibration_batches(settings, tokenizer)
    LOG.info("calibrating on %s (%d batches)", settings.tag, len(batches))
    stats = collect_stats(model, batches, progress=progress)
    return [dataclasses.replace(s, tag=settings.tag) for s in stats]
