"""Random-weight models of every supported family, in that family's real layout (its own
config class, modeling code, activation, fused or split MLP), at tiny shapes.

Shared by the family tests (``from glu_families import ...``: pytest puts this folder on
``sys.path``). ``family_config(name)`` is a config; ``save_family_model(name, folder)``
saves a seeded random-weight model with ``save_pretrained`` and returns the folder.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from glu_prune.catalog.families import FAMILIES
from glu_prune.core.mlps import down_linear, glu_mlps

# One small shape for all: 2 layers, hidden 64, 4 query / 2 key-value heads of 16, width 96.
_COMMON: dict[str, Any] = {
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
    "tie_word_embeddings": False,
}
# What a family's real checkpoints set beyond the common shape (their activation, the
# sliding-window layer pattern that makes per-layer lists matter, tied embeddings).
_EXTRA: dict[str, dict[str, Any]] = {
    "llama": {"hidden_act": "silu"},
    "mistral": {"sliding_window": 8},
    "ministral": {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"]},
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"tie_word_embeddings": True},
    "gemma": {"hidden_act": "gelu_pytorch_tanh", "tie_word_embeddings": True},
    "gemma2": {"hidden_activation": "gelu_pytorch_tanh", "sliding_window": 8,
               "tie_word_embeddings": True},
    "gemma3_text": {"hidden_activation": "gelu_pytorch_tanh", "sliding_window": 8,
                    "tie_word_embeddings": True},
    "phi3": {},
    "olmo": {},
    "olmo2": {},
    "granite": {"embedding_multiplier": 2.0, "residual_multiplier": 0.5,
                "logits_scaling": 4.0},
    "glm4": {},
    "cohere": {"tie_word_embeddings": True},
}
FAMILY_NAMES: list[str] = FAMILIES.names()
assert set(_EXTRA) == set(FAMILY_NAMES), "every family needs a test shape"


def family_config(name: str, **overrides: Any):
    """A config of family ``name``'s own config class at the tiny shape."""
    model_type = FAMILIES[name].model_types[0]
    return AutoConfig.for_model(model_type, **{**_COMMON, **_EXTRA[name], **overrides})


def family_model(name: str, seed: int = 0, **overrides: Any):
    """A seeded random-weight fp32 model of family ``name`` (eval mode, eager attention).

    Weights are drawn with a large std so every neuron matters to the logits."""
    torch.manual_seed(seed)
    config = family_config(name, **overrides)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model.eval()


def save_family_model(name: str, folder: Path, seed: int = 0) -> Path:
    """Save :func:`family_model` with ``save_pretrained`` into ``folder``; returns it."""
    family_model(name, seed).save_pretrained(folder)
    return folder


def token_batches(n: int = 3, seq: int = 12, seed: int = 1) -> list[torch.Tensor]:
    """Calibration / input token ids of the tiny vocabulary (ids above the special ones)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 128, (2, seq), generator=gen) for _ in range(n)]


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``ids``, without gradients."""
    with torch.no_grad():
        return model(ids).logits


def zeroed(model, kept: list[list[int]]):
    """A copy of ``model`` whose removed neurons' down columns are zero (per layer, the
    neurons not in ``kept[i]``): what pruning must equal."""
    out = copy.deepcopy(model)
    for mlp, idx in zip(glu_mlps(out), kept):
        removed = torch.ones(down_linear(mlp).in_features, dtype=torch.bool)
        removed[idx] = False
        with torch.no_grad():
            down_linear(mlp).weight[:, removed] = 0
    return out
