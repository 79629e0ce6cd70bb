"""Neuron-importance scores for GLU MLPs, by name.

Two registries, one per signature:

- ``SCORERS``, weight-only: ``(mlp, layer, seed) -> scores``.
- ``CALIBRATED_SCORERS``, data-driven: ``(mlp, stats) -> scores``, where ``stats`` is the
  layer's :class:`glu_prune.core.calibration.LayerStats`, collected beforehand from calibration
  batches. Running the model is the calibration module's job; scoring stays arithmetic.

Every scorer returns a float32 tensor of shape ``[intermediate_size]`` (higher = more
important). Scoring never touches the model: weights are read, cast to float32 copies, and
nothing is written back. ``maw``, ``vow``, ``pon``, ``l2`` and ``maw_hybrid`` compute what
optipfair 0.4.2 computes, with the same torch reductions, so both keep the same neurons.

``h`` below is the input of ``down_proj`` (``silu(gate) * up``), shape [tokens, d_ff].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch

from glu_prune.catalog.registry import Registry, unknown_name
from glu_prune.core.mlps import down_linear, gate_up_weights, width_of

if TYPE_CHECKING:  # calibration runs models; importing it here would be the wrong direction
    from glu_prune.core.calibration import LayerStats

Scorer = Callable[["GLUMLP", int, int], torch.Tensor]  # (mlp, layer_index, seed) -> scores
CalibratedScorer = Callable[["GLUMLP", "LayerStats"], torch.Tensor]  # (mlp, stats) -> scores


class GLUMLP(Protocol):
    """What a scorer needs: a gated MLP of a layout :mod:`glu_prune.core.mlps` reads
    (gate_proj/up_proj/down_proj, or a fused gate_up_proj and down_proj)."""

    down_proj: torch.nn.Linear


SCORERS: Registry[Scorer] = Registry("weight-only importance method")
CALIBRATED_SCORERS: Registry[CalibratedScorer] = Registry("calibration-based importance method")
# Methods whose pruning also moves the removed neurons' mean output into down_proj's bias
# (glu_prune.core.compensate); their kept sets alone do not define the pruned model.
BIAS_COMPENSATED: set[str] = set()


def register(name: str) -> Callable[[Scorer], Scorer]:
    """Decorator adding a weight-only scorer to the registry under ``name``."""
    return SCORERS.register(name)


def register_calibrated(name: str, *, compensates: bool = False
                        ) -> Callable[[CalibratedScorer], CalibratedScorer]:
    """Decorator adding a data-driven scorer; ``compensates`` marks a bias-compensated method."""

    def deco(fn: CalibratedScorer) -> CalibratedScorer:
        CALIBRATED_SCORERS.register(name, fn)
        if compensates:
            BIAS_COMPENSATED.add(name)
        return fn

    return deco


# ---------------------------------------------------------------- weight-only


def _rows(mlp: GLUMLP) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 so bf16 rounding cannot reorder close scores
    g, u = gate_up_weights(mlp)  # fused families: the two halves of gate_up
    return g.detach().float(), u.detach().float()


def _columns(mlp: GLUMLP) -> torch.Tensor:
    """``down_proj`` weight, float32, shape [hidden, d_ff]: column j belongs to neuron j."""
    return down_linear(mlp).weight.detach().float()


def _peak_to_peak(w: torch.Tensor, dim: int) -> torch.Tensor:
    """``max + |min|`` along ``dim`` (the study's MAW per matrix)."""
    return w.amax(dim) + w.amin(dim).abs()


@register("maw")
def maw(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Maximum absolute weight (the study's): ``max(g)+|min(g)| + max(u)+|min(u)|`` per neuron."""
    g, u = _rows(mlp)
    return _peak_to_peak(g, 1) + _peak_to_peak(u, 1)


@register("vow")
def vow(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Variance of weights: ``var(g) + var(u)`` per neuron.

    Sample variance (n - 1), as optipfair's ``torch.var`` default: the ranking is the same
    as with the population variance in exact arithmetic, but only the same formula rounds
    the same way, and parity means the same kept neurons.
    """
    g, u = _rows(mlp)
    return g.var(1, correction=1) + u.var(1, correction=1)


@register("pon")
def pon(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Product of norms: ``||g||_1 * ||u||_1`` per neuron."""
    g, u = _rows(mlp)
    # vector_norm, not abs().sum(): the same reduction as optipfair's torch.norm(p=1)
    return torch.linalg.vector_norm(g, 1, dim=1) * torch.linalg.vector_norm(u, 1, dim=1)


@register("l2")
def l2(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """optipfair's L2: ``||g||_2 + ||u||_2`` per neuron (the down column is not used)."""
    g, u = _rows(mlp)
    return torch.linalg.vector_norm(g, 2, dim=1) + torch.linalg.vector_norm(u, 2, dim=1)


@register("l2_full")
def l2_full(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """L2 norm of the neuron's gate row, up row and down column taken together.

    Kept beside ``l2`` because it is the only weight-only score that sees the output side
    (the down column) of a neuron.
    """
    g, u = _rows(mlp)
    return (g.pow(2).sum(1) + u.pow(2).sum(1) + _columns(mlp).pow(2).sum(0)).sqrt()


@register("random")
def random(mlp: GLUMLP, layer: int = 0, seed: int = 0) -> torch.Tensor:
    """Seeded random scores (a control): the same seed and layer give the same choice."""
    n = width_of(mlp)
    gen = torch.Generator(device="cpu").manual_seed(seed * 100_003 + layer)
    # drawn on the CPU so the choice does not depend on the device (or on meta weights)
    return torch.rand(n, generator=gen, dtype=torch.float32)


# ---------------------------------------------------------------- calibration-based


def _check_stats(mlp: GLUMLP, stats: LayerStats) -> None:
    """The statistics belong to a layer of this width and saw at least one token."""
    n = width_of(mlp)
    if stats.intermediate_size != n:
        raise ValueError(f"calibration statistics are for {stats.intermediate_size} neurons, "
                         f"but this MLP has {n}: collect them on the model being pruned")
    if stats.tokens < 1:
        raise ValueError("calibration statistics saw no tokens; run calibration on at least "
                         "one non-empty batch")


@register_calibrated("act")
def act(mlp: GLUMLP, stats: LayerStats) -> torch.Tensor:
    """Minitron's activation score: L2 norm over sequences of each sequence's mean ``|h_j|``."""
    _check_stats(mlp, stats)
    return stats.seq_abs_mean_sq.sqrt().float()


@register_calibrated("wanda_sp")
def wanda_sp(mlp: GLUMLP, stats: LayerStats) -> torch.Tensor:
    """Structured Wanda (FLAP's ``wanda_sp``): ``mean_i |W_down[i,j]| * sqrt(sum_t h_tj^2 / N)``."""
    _check_stats(mlp, stats)
    w = _columns(mlp)
    rms = (stats.sum_sq / stats.tokens).sqrt().to(w.device)
    return (w.abs().mean(0).double() * rms).float()


@register_calibrated("flap", compensates=True)
def flap(mlp: GLUMLP, stats: LayerStats) -> torch.Tensor:
    """FLAP's WIFV: ``Var_t(h_j) * sum_i W_down[i, j]^2``; pruned with bias compensation."""
    _check_stats(mlp, stats)
    w = _columns(mlp)
    return (stats.var.to(w.device) * w.pow(2).sum(0).double()).float()


@register_calibrated("maw_hybrid")
def maw_hybrid(mlp: GLUMLP, stats: LayerStats) -> torch.Tensor:
    """optipfair's data-driven MAW: normalised peak-to-peak of gate, up and down, times ``X_d``.

    Per matrix, the peak-to-peak score is divided by its largest value (+1e-8, as optipfair)
    so the three are comparable; their sum is multiplied by ``X_d``, the sum over calibration
    batches of each batch's L2 norm of ``h_j`` (optipfair sums per-batch norms, so the score
    depends on the batch size, which is therefore part of the calibration settings).
    """
    _check_stats(mlp, stats)
    g, u = _rows(mlp)
    parts = (_peak_to_peak(g, 1), _peak_to_peak(u, 1), _peak_to_peak(_columns(mlp), 0))
    gate_n, up_n, down_n = (p / (p.max() + 1e-8) for p in parts)
    return (gate_n + up_n + down_n) * stats.batch_l2_sum.float().to(g.device)


# ---------------------------------------------------------------- lookup


def known_methods() -> list[str]:
    """Every registered method name, sorted."""
    return sorted({*SCORERS, *CALIBRATED_SCORERS})


def needs_calibration(method: str) -> bool:
    """Whether ``method`` scores from calibration statistics (unknown names are an error)."""
    get_scorer(method)
    return method in CALIBRATED_SCORERS


def get_scorer(name: str) -> Scorer | CalibratedScorer:
    """Return the scorer registered as ``name``; an unknown name is an ``UnknownName``
    (a ``ValueError`` and a ``KeyError``) listing every method of both registries."""
    if name in SCORERS:
        return SCORERS[name]
    if name in CALIBRATED_SCORERS:
        return CALIBRATED_SCORERS[name]
    raise unknown_name("importance method", name, known_methods())


def score(mlp: GLUMLP, method: str = "maw", *, layer: int = 0, seed: int = 0,
          stats: LayerStats | None = None) -> torch.Tensor:
    """Scores of one layer's neurons by ``method`` (float32, on the CPU).

    Calibration-based methods need ``stats``, this layer's calibration statistics.
    """
    fn = get_scorer(method)
    if method in CALIBRATED_SCORERS:
        if stats is None:
            raise ValueError(f"importance method {method!r} is calibration-based and needs the "
                             f"layer's activation statistics (glu_prune.core.calibration."
                             f"calibrate); weight-only methods: {', '.join(sorted(SCORERS))}")
        return fn(mlp, stats).float().cpu()
    return fn(mlp, layer, seed).float().cpu()
