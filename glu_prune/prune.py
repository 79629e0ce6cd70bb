"""GLU width pruning: kept count, neuron selection, surgery, and the config-only expansion table.

Neuron j of a layer is row j of ``gate_proj`` and ``up_proj`` and column j of
``down_proj``. Pruning keeps the same ``k`` neurons-per-layer count everywhere, slices
those three matrices and sets ``config.intermediate_size = k``. Nothing else changes.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from glu_prune.importance import get_scorer, score

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------- kept count


def _is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` would silently mean 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_level(pct: float | None = None, round_to: int = 1) -> None:
    """The checks of a pruning level that need no layer size: ``pct`` a number in
    [0, 100) (or None), ``round_to`` an integer >= 1. Raises ValueError naming the value."""
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    if pct is None:
        return
    if isinstance(pct, bool):
        raise ValueError(f"pct must be a number in [0, 100), got {pct!r} (a bool)")
    if not (_is_number(pct) and 0 <= pct < 100) or math.isnan(pct):
        raise ValueError(f"pct must be in [0, 100), got {pct!r}")


def kept_count(n: int, *, pct: float | None = None, expansion_ratio: float | None = None,
               hidden_size: int | None = None, round_to: int = 1) -> int:
    """Neurons kept per layer out of ``n``.

    ``pct``: removed = min(floor(pct/100 * n), n - 1) (the study's rule: 10 % of 8192 keeps
    7373). ``expansion_ratio``: k = round(ratio * hidden_size). ``round_to > 1`` rounds k to
    the nearest multiple (at least ``round_to``, at most ``n``). Pruning that would not
    prune is an error: ``round_to`` at or above ``n``, or a pct > 0 (or a ratio) whose
    rounding keeps all ``n`` neurons.
    """
    if (pct is None) == (expansion_ratio is None):
        raise ValueError(f"give exactly one of pct or expansion_ratio "
                         f"(got pct={pct!r}, expansion_ratio={expansion_ratio!r})")
    check_level(pct, round_to)
    if round_to > 1 and round_to >= n:
        raise ValueError(f"round_to={round_to} is at or above the intermediate size {n}: "
                         f"every rounding keeps all {n} neurons; use a round_to below {n}")
    if pct is not None:
        # the small epsilon keeps 0.1*8192*... from flooring one short in binary floating point
        removed = min(math.floor(pct / 100 * n + 1e-9), n - 1)
        k = n - removed
    else:
        if hidden_size is None:
            raise ValueError("expansion_ratio needs hidden_size")
        current = n / hidden_size
        if not (_is_number(expansion_ratio) and 0 < expansion_ratio < current):
            raise ValueError(f"expansion_ratio must be in (0, {current:g}) (the current "
                             f"intermediate_size/hidden_size = {n}/{hidden_size}), "
                             f"got {expansion_ratio!r}")
        k = max(1, min(n, round(expansion_ratio * hidden_size)))
    if round_to > 1:
        k = min(n, max(round_to, round_to * round(k / round_to)))
    if k == n and (expansion_ratio is not None or pct > 0):
        asked = f"pct={pct!r}" if pct is not None else f"expansion_ratio={expansion_ratio!r}"
        raise ValueError(f"{asked} with round_to={round_to} keeps k={k} of the n={n} "
                         f"neurons: nothing would be pruned; ask for more pruning"
                         + (" or a smaller round_to" if round_to > 1 else ""))
    return k


def pct_of(n: int, k: int) -> float:
    """The pruning percentage actually applied when ``k`` of ``n`` neurons are kept."""
    return 100.0 * (n - k) / n


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


# ---------------------------------------------------------------- from a config alone


def config_param_count(config: Any, intermediate_size: int | None = None) -> int:
    """Total parameters of a Llama config (tied embeddings counted once)."""
    h, v, n_layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    i = intermediate_size if intermediate_size is not None else config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = h * config.num_attention_heads * head_dim
    kv = 2 * h * config.num_key_value_heads * head_dim
    o = config.num_attention_heads * head_dim * h
    mlp = 3 * h * i
    attn_bias = (config.num_attention_heads + 2 * config.num_key_value_heads) * head_dim + h \
        if getattr(config, "attention_bias", False) else 0
    mlp_bias = 2 * i + h if getattr(config, "mlp_bias", False) else 0
    per_layer = q + kv + o + mlp + 2 * h + attn_bias + mlp_bias  # two RMSNorm weights
    head = 0 if getattr(config, "tie_word_embeddings", False) else v * h
    return v * h + n_layers * per_layer + h + head


def prefill_flops(config: Any, intermediate_size: int, prompt_len: int) -> float:
    """Forward FLOPs of a prefill over ``prompt_len`` tokens (matmuls + causal attention).

    Logits are computed for the last position only, as the TTFT benchmark does.
    """
    h, n_layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    qd, kvd = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    linear = h * qd + 2 * h * kvd + qd * h + 3 * h * intermediate_size
    attn = 2 * qd * prompt_len  # QK^T and AV over a causal (half) window, per token
    return 2.0 * prompt_len * n_layers * (linear + attn) + 2.0 * h * config.vocab_size


def decode_weight_bytes(config: Any, intermediate_size: int, bytes_per_param: int = 2) -> float:
    """Bytes of weights read per decoded token (every matrix once; the embedding row is free)."""
    total = config_param_count(config, intermediate_size)
    # The input embedding is a row lookup; with tied weights the lm_head still reads it all.
    embedding_rows_read = 0 if getattr(config, "tie_word_embeddings", False) \
        else config.vocab_size * config.hidden_size
    return float(bytes_per_param * (total - embedding_rows_read))


def expansion_table(config: Any, levels: Iterable[float], *, round_to: int = 1,
                    prompt_len: int = 512) -> list[dict[str, Any]]:
    """Per pruning level, from the config alone: kept size, expansion ratio, parameters,
    % parameters removed, and ideal prefill (FLOP) and decode (weight-bytes) speedups."""
    n, h = config.intermediate_size, config.hidden_size
    base_params = config_param_count(config, n)
    base_flops = prefill_flops(config, n, prompt_len)
    base_bytes = decode_weight_bytes(config, n)
    rows = []
    for level in levels:
        k = kept_count(n, pct=level, round_to=round_to)
        params = config_param_count(config, k)
        rows.append({
            "pct": level, "intermediate_size": k, "expansion_ratio": k / h,
            "total_params": params, "params_removed_pct": 100.0 * (1 - params / base_params),
            "ideal_prefill_speedup": base_flops / prefill_flops(config, k, prompt_len),
            "ideal_decode_speedup": base_bytes / decode_weight_bytes(config, k),
        })
    return rows
