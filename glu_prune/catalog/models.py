"""Model registry: HF ids, embedded architectures and pruning levels.

The real Llama-3.2 architectures are embedded (public configs) so shapes, parameter
counts and speed work without downloading weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glu_prune import tiny
from glu_prune.catalog.families import family_of, set_depth
from glu_prune.catalog.registry import Registry

BASE_LEVELS = (0, 10, 20, 30, 40, 50, 60)
INSTRUCT_LEVELS = (0, 10, 40, 60)  # the published instruct grid

# Shared by all Llama-3.2 checkpoints (public config.json of meta-llama/Llama-3.2-*).
_LLAMA32_COMMON: dict[str, Any] = {
    "vocab_size": 128256,
    "intermediate_size": 8192,
    "num_key_value_heads": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}
_LLAMA32_1B = {**_LLAMA32_COMMON, "hidden_size": 2048, "num_hidden_layers": 16,
               "num_attention_heads": 32, "head_dim": 64}
_LLAMA32_3B = {**_LLAMA32_COMMON, "hidden_size": 3072, "num_hidden_layers": 28,
               "num_attention_heads": 24, "head_dim": 128}
_INSTRUCT_EOS = {"eos_token_id": [128001, 128008, 128009]}


# The fields that make a checkpoint the registered model; anything else (rope, eos ids,
# dtype) may differ between equally valid saves of the same weights.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "intermediate_size", "vocab_size", "tie_word_embeddings")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: where its weights live and how the suite treats it."""

    name: str
    hf_id: str | None
    architecture: dict[str, Any]
    levels: tuple[int, ...]
    instruct: bool = False
    benchmark_set: str = "base"  # a name in glu_prune.catalog.benchmarks' sets
    local_dir: Path | None = None  # shipped weights (the tiny models) or a user's folder
    shape_only: bool = False  # a folder with config.json only: random weights of its shape
    source: str | None = None  # as the user gave it (--glu-model, models file); None: preset
    methods: tuple[str, ...] = ()  # the models file's importance methods; empty: --glu-methods
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def hidden_size(self) -> int:
        return int(self.architecture["hidden_size"])

    @property
    def intermediate_size(self) -> int:
        return int(self.architecture["intermediate_size"])


def architecture_fingerprint(spec: ModelSpec) -> dict[str, Any]:
    """What makes a pinned baseline this model's: its family (``model_type``; the presets
    are Llama) and its shape fields, so another model under the same name is caught."""
    arch = spec.architecture
    return {"model_type": arch.get("model_type", "llama"),
            **{key: arch.get(key) for key in ARCHITECTURE_KEYS}}


def _tiny_specs() -> list[ModelSpec]:
    arch = dict(tiny.TINY_CONFIG)
    return [
        ModelSpec("tiny-llama", None, arch, BASE_LEVELS, benchmark_set="tiny",
                  local_dir=tiny.MODEL_DIRS["tiny-llama"]),
        ModelSpec("tiny-llama-instruct", None, arch, INSTRUCT_LEVELS, instruct=True,
                  benchmark_set="tiny-instruct",
                  local_dir=tiny.MODEL_DIRS["tiny-llama-instruct"]),
    ]


def _build_registry() -> Registry[ModelSpec]:
    specs = [
        ModelSpec("llama-3.2-1b", "meta-llama/Llama-3.2-1B", _LLAMA32_1B, BASE_LEVELS),
        ModelSpec("llama-3.2-3b", "meta-llama/Llama-3.2-3B", _LLAMA32_3B, BASE_LEVELS),
        ModelSpec("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct",
                  {**_LLAMA32_1B, **_INSTRUCT_EOS}, INSTRUCT_LEVELS, instruct=True,
                  benchmark_set="instruct"),
        ModelSpec("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct",
                  {**_LLAMA32_3B, **_INSTRUCT_EOS}, INSTRUCT_LEVELS, instruct=True,
                  benchmark_set="instruct"),
        *_tiny_specs(),
    ]
    return Registry("model", ((s.name, s) for s in specs))


MODELS: Registry[ModelSpec] = _build_registry()
# The registered spec for a name; an unknown name is an UnknownName listing the known ones.
get_model_spec = MODELS.get


def make_config(name: str, *, num_layers: int | None = None):
    """A ``transformers`` config of the registered architecture, of its family's config class
    (``model_type`` in the architecture; ``llama`` when absent), optionally fewer layers."""
    from transformers import AutoConfig

    arch = dict(get_model_spec(name).architecture)
    model_type = arch.pop("model_type", "llama")
    family_of(model_type)  # an unsupported family fails here, naming the supported ones
    config = AutoConfig.for_model(model_type, **arch)
    if num_layers is not None:
        set_depth(config, num_layers)
    return config
