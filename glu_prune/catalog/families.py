"""Gated-MLP model families, described once as data.

A family says where a decoder keeps its GLU MLPs and what they are called: the layer list
(``layers``), the MLP attribute of a layer (``mlp``), split ``gate``/``up`` projections or
one fused ``gate_up`` (Phi-3, GLM-4: its first half is the gate, neuron *j* is row *j* of
each half), ``down``, the config field holding the width, the config field naming the
activation, whether the config can express an MLP bias (``mlp_bias``), and per-layer config
lists (``layer_types`` of sliding-window models, cut with the depth). Core code reads these
descriptions and never asks for a ``model_type`` itself (the GPTQModel way: a family is a
few lines of data, one generic engine reads it).

The attribute names were read from transformers 5.x's modeling files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glu_prune.catalog.registry import Registry


class UnsupportedFamily(ValueError):
    """A model whose MLP is not a gated MLP glu-prune knows how to prune."""


@dataclass(frozen=True)
class Family:
    """One gated-MLP family: where its MLPs live and which config fields describe them."""

    name: str
    model_types: tuple[str, ...]
    layers: str = "model.layers"  # dotted path from the CausalLM to the decoder layers
    mlp: str = "mlp"  # a decoder layer's MLP attribute
    gate: str | None = "gate_proj"  # None when fused
    up: str | None = "up_proj"  # None when fused
    gate_up: str | None = None  # the fused [gate; up] projection, when there is one
    down: str = "down_proj"
    width_field: str = "intermediate_size"  # the config field holding the MLP width
    activation_field: str = "hidden_act"
    mlp_bias: bool = False  # whether the config has an ``mlp_bias`` flag (bias on reload)
    per_layer_lists: tuple[str, ...] = ()  # config lists with one entry per layer

    def __post_init__(self) -> None:
        split = self.gate is not None and self.up is not None
        if split == (self.gate_up is not None):  # exactly one of split / fused
            raise ValueError(f"family {self.name!r}: give gate and up, or gate_up, not both")

    @property
    def fused(self) -> bool:
        """Whether gate and up are one Linear (rows [0, n) gate, [n, 2n) up)."""
        return self.gate_up is not None

    def width(self, config: Any) -> int:
        """The MLP width the config holds."""
        return int(getattr(config, self.width_field))


_SLIDING = ("layer_types",)

FAMILIES: Registry[Family] = Registry("model family", ((f.name, f) for f in (
    Family("llama", ("llama",), mlp_bias=True),  # also SmolLM, TinyLlama (model_type llama)
    Family("mistral", ("mistral",)),
    Family("ministral", ("ministral",), per_layer_lists=_SLIDING),
    Family("qwen2", ("qwen2",), per_layer_lists=_SLIDING),
    Family("qwen3", ("qwen3",), per_layer_lists=_SLIDING),
    Family("gemma", ("gemma",)),
    Family("gemma2", ("gemma2",), activation_field="hidden_activation",
           per_layer_lists=_SLIDING),
    Family("gemma3_text", ("gemma3_text",), activation_field="hidden_activation",
           per_layer_lists=_SLIDING),
    Family("phi3", ("phi3",), gate=None, up=None, gate_up="gate_up_proj"),
    Family("olmo", ("olmo",)),
    Family("olmo2", ("olmo2",)),
    Family("granite", ("granite",), mlp_bias=True),
    Family("glm4", ("glm4",), gate=None, up=None, gate_up="gate_up_proj"),
    Family("cohere", ("cohere",)),
)))

_BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES.values() for t in f.model_types}

# Known families glu-prune refuses, and why (named in the one-line error).
_NOT_GATED = ("gpt2", "gpt_neo", "gpt_neox", "gptj", "phi", "falcon", "opt", "bloom",
              "starcoder2", "mpt")
_MIXTURE_OF_EXPERTS = ("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "deepseek_v2",
                       "deepseek_v3", "olmoe", "granitemoe", "phimoe", "dbrx", "jamba")


def _model_type(config_or_model_type: Any) -> str:
    if isinstance(config_or_model_type, str):
        return config_or_model_type
    config = getattr(config_or_model_type, "config", config_or_model_type)
    return str(getattr(config, "model_type", "") or "")


def family_of(config_or_model_type: Any) -> Family:
    """The family of a config, a model or a ``model_type``; ``UnsupportedFamily`` (one line,
    naming the model_type, why when known, and the supported families) otherwise."""
    model_type = _model_type(config_or_model_type)
    family = _BY_MODEL_TYPE.get(model_type)
    if family is not None:
        return family
    if model_type in _NOT_GATED:
        why = " (its MLP is not gated: no gate/up pair to prune together)"
    elif model_type in _MIXTURE_OF_EXPERTS:
        why = " (a mixture-of-experts MLP: expert pruning is a different problem)"
    else:
        why = ""
    raise UnsupportedFamily(f"model_type {model_type or '(none)'!r} is not supported{why}; "
                            f"supported: {', '.join(sorted(_BY_MODEL_TYPE))}")


def set_depth(config: Any, num_layers: int) -> None:
    """Give ``config`` ``num_layers`` decoder layers, cutting its per-layer lists with it
    (a sliding-window model's ``layer_types`` must have one entry per layer)."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    for name in family_of(config).per_layer_lists:
        values = getattr(config, name, None)
        if values is not None:
            if len(values) < num_layers:
                raise ValueError(f"{name} has {len(values)} entries, fewer than the "
                                 f"{num_layers} layers asked for")
            setattr(config, name, list(values)[:num_layers])
    config.num_hidden_layers = num_layers


def supported_model_types() -> list[str]:
    """Every model_type glu-prune prunes, sorted."""
    return sorted(_BY_MODEL_TYPE)
