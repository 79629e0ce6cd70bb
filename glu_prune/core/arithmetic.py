"""Config arithmetic, from a config alone: kept counts, parameters, prefill FLOPs,
decode weight bytes, the expansion table and ideal speedups.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from typing import Any, Iterable

from glu_prune.catalog.families import family_of
from glu_prune.core.mlps import down_linear, glu_mlps, layer_widths, width_of


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


# ---------------------------------------------------------------- from a config alone


def _width(config: Any) -> int:
    return family_of(config).width(config)


@functools.lru_cache(maxsize=64)
def _meta_counts(config_json: str) -> tuple[int, int, float]:
    """(total params, layers, params per MLP neuron) of a config, counted exactly on a model
    built on the ``meta`` device (no memory: parameters have shapes, no storage)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.loads(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    mlps = glu_mlps(model)
    n = width_of(mlps[0])
    down_bias = down_linear(mlps[0]).bias
    scaled = sum(p.numel() for p in mlps[0].parameters()) - \
        (down_bias.numel() if down_bias is not None else 0)  # down's bias does not scale
    return total, len(mlps), scaled / n


def config_param_count(config: Any, intermediate_size: int | None = None) -> int:
    """Total parameters of a config of any supported family (tied embeddings counted
    once), exact: the model is built once on the ``meta`` device and counted, and every
    layer's MLP loses ``intermediate_size`` - width neurons' rows and columns. Without
    ``intermediate_size``, the config's own widths (per layer, when they differ)."""
    fam = family_of(config)
    total, layers, per_neuron = _meta_counts(config.to_json_string(use_diff=False))
    n = fam.width(config)
    widths = layer_widths(config)
    own = n if widths is None else sum(widths) / len(widths)  # parameters are linear in k
    i = own if intermediate_size is None else intermediate_size
    return int(round(total - layers * (n - i) * per_neuron))


def mean_width(config: Any) -> float:
    """The mean MLP width over layers: the family's width, or the mean of the per-layer
    widths the config records (a globally pruned model)."""
    widths = layer_widths(config)
    return float(_width(config)) if widths is None else sum(widths) / len(widths)


def prefill_flops(config: Any, intermediate_size: float | None, prompt_len: int) -> float:
    """Forward FLOPs of a prefill over ``prompt_len`` tokens (matmuls + causal attention).

    Logits are computed for the last position only, as the TTFT benchmark does.
    ``intermediate_size`` None: the config's own widths (FLOPs are linear in each layer's).
    """
    h, n_layers = config.hidden_size, config.num_hidden_layers
    if intermediate_size is None:
        intermediate_size = mean_width(config)
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    qd, kvd = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    linear = h * qd + 2 * h * kvd + qd * h + 3 * h * intermediate_size
    attn = 2 * qd * prompt_len  # QK^T and AV over a causal (half) window, per token
    return 2.0 * prompt_len * n_layers * (linear + attn) + 2.0 * h * config.vocab_size


def decode_weight_bytes(config: Any, intermediate_size: int | None = None,
                       bytes_per_param: int = 2) -> float:
    """Bytes of weights read per decoded token (every matrix once; the embedding row is free).
    ``intermediate_size`` None: the config's own widths."""
    total = config_param_count(config, intermediate_size)
    # The input embedding is a row lookup; with tied weights the lm_head still reads it all.
    embedding_rows_read = 0 if getattr(config, "tie_word_embeddings", False) \
        else config.vocab_size * config.hidden_size
    return float(bytes_per_param * (total - embedding_rows_read))


def expansion_table(config: Any, levels: Iterable[float], *, round_to: int = 1,
                    prompt_len: int = 512) -> list[dict[str, Any]]:
    """Per pruning level, from the config alone: kept size, expansion ratio, parameters,
    % parameters removed, and ideal prefill (FLOP) and decode (weight-bytes) speedups."""
    n, h = _width(config), config.hidden_size
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


def ideal_prefill_speedup(config: Any, n: int, k: int, prompt_len: int) -> float:
    """Speedup a prefill would get if time followed FLOPs exactly."""
    return prefill_flops(config, n, prompt_len) / prefill_flops(config, k, prompt_len)


def ideal_decode_speedup(config: Any, n: int, k: int) -> float:
    """Speedup a decode step would get if time followed the bytes of weights read."""
    return decode_weight_bytes(config, n) / decode_weight_bytes(config, k)


def ideal_prefill_between(before: Any, after: Any, prompt_len: int) -> float:
    """The FLOP-ideal prefill speedup of config ``after`` over ``before``, for any shape:
    fewer layers (depth), narrower MLPs, per-layer widths (each config's own are counted)."""
    return prefill_flops(before, None, prompt_len) / prefill_flops(after, None, prompt_len)


def ideal_decode_between(before: Any, after: Any) -> float:
    """The weight-byte-ideal decode speedup of config ``after`` over ``before`` (any shape)."""
    return decode_weight_bytes(before) / decode_weight_bytes(after)
