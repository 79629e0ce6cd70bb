"""The timed calls: prefill (TTFT), decode (TPOT), generate, the lone MLP block.

Every timed call synchronizes the device inside itself, so a wall-clock timer
around it measures the work, not the launch.
"""

from __future__ import annotations

import copy
import inspect
from operator import attrgetter
from dataclasses import dataclass
from typing import Any

import torch

from glu_prune.catalog.families import family_of
from glu_prune.catalog.models import get_model_spec, make_config
from glu_prune.core.arithmetic import kept_count
from glu_prune.core.placement import placed_gpus
from glu_prune.performance.settings import MLP_BLOCK_TOKENS, PerfVariant


# ---------------------------------------------------------------- timed calls


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA runs asynchronously; CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synchronize_model(model: Any, device: torch.device | str) -> None:
    """Wait for ``device`` and for every GPU ``model`` is placed on (a placed model's last
    layers may still be running on another GPU when the input's device is idle)."""
    synchronize(device)
    for index in placed_gpus(model):
        torch.cuda.synchronize(index)


def random_prompt(batch: int, length: int, vocab_size: int, device: str,
                  seed: int = 0) -> torch.Tensor:
    """Token ids (no tokenizer needed: speed does not depend on which tokens)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=gen).to(device)


@torch.inference_mode()
def prefill(model: Any, input_ids: torch.Tensor, use_cache: bool = False) -> None:
    """TTFT: one synchronized forward over the prompt, logits for the last position only.

    ``use_cache=True`` also fills a KV cache, as ``generate()``'s first step does.
    """
    model(input_ids=input_ids, use_cache=use_cache, logits_to_keep=1)
    synchronize_model(model, input_ids.device)


def fixed_length_config(model: Any, new_tokens: int) -> Any:
    """Greedy generation of exactly ``new_tokens`` (EOS suppressed until then)."""
    from transformers import GenerationConfig

    eos = model.config.eos_token_id
    pad = model.config.pad_token_id
    pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos) or 0
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            do_sample=False, eos_token_id=eos, pad_token_id=pad,
                            use_cache=True)


@torch.inference_mode()
def generate(model: Any, input_ids: torch.Tensor, config: Any) -> torch.Tensor:
    """One synchronized ``generate()`` call; returns prompt + new token ids."""
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                         generation_config=config)
    synchronize_model(model, input_ids.device)
    return out


def _cache_argument(model: Any) -> str:
    """The forward argument that takes a KV cache (transformers 5 renamed it ``cache``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(output: Any) -> Any:
    cache = output.get("cache")
    return cache if cache is not None else output.get("past_key_values")


@dataclass
class DecodeStart:
    """A model right after prefill: its KV cache and the first generated token.

    ``fresh()`` gives each round its own copy of the cache (decoding grows it), so every
    round decodes from the same state without repeating the prefill.
    """

    model: Any
    cache: Any
    token: torch.Tensor

    def fresh(self) -> tuple[Any, Any, torch.Tensor]:
        """``(model, cache copy, first token)``: the arguments of :func:`decode`."""
        return self.model, copy.deepcopy(self.cache), self.token


@torch.inference_mode()
def start_decode(model: Any, input_ids: torch.Tensor) -> DecodeStart:
    """Prefill ``input_ids`` (untimed set-up of a decode benchmark)."""
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1:].argmax(-1)
    synchronize_model(model, input_ids.device)
    return DecodeStart(model, _cache_of(out), token)


@torch.inference_mode()
def decode(model: Any, cache: Any, token: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` greedy decode steps from a prefilled ``cache``; returns the last token.

    The step count is fixed and EOS is never looked at, so every variant decodes the same
    number of tokens; each step is synchronized, as ``generate()`` is when it checks its
    stopping criteria. Only decode is inside, so its time is positive by construction.
    """
    name = _cache_argument(model)
    for _ in range(steps):
        out = model(input_ids=token, use_cache=True, logits_to_keep=1, **{name: cache})
        cache = _cache_of(out)
        token = out.logits[:, -1:].argmax(-1)
        synchronize_model(model, token.device)
    return token


def mlp_block_size(v: PerfVariant) -> tuple[int, int]:
    """(hidden, kept intermediate) of a lone-block variant."""
    spec = get_model_spec(v.model)
    return spec.hidden_size, kept_count(spec.intermediate_size, pct=v.pct, round_to=v.round_to)


def mlp_block_id(v: PerfVariant, tokens: int = MLP_BLOCK_TOKENS) -> str:
    """Test id of a lone-block benchmark, e.g. ``llama-3.2-1b-maw-p10-r128-i7424-T512``."""
    return f"{v.slug}-i{mlp_block_size(v)[1]}-T{tokens}"


def mlp_block(model: str, intermediate_size: int, dtype: torch.dtype,
              device: str, seed: int = 0) -> torch.nn.Module:
    """A lone MLP of ``model``'s own family and shape (its activation, split or fused
    projections), ``intermediate_size`` wide, random weights: the MLP of a one-layer model
    built from its config."""
    from transformers import AutoModelForCausalLM

    config = make_config(model, num_layers=1)
    family = family_of(config)
    setattr(config, family.width_field, intermediate_size)
    config.vocab_size = 64  # only the MLP is kept: a small embedding costs nothing
    torch.manual_seed(seed)
    layer = attrgetter(family.layers)(AutoModelForCausalLM.from_config(config))[0]
    return getattr(layer, family.mlp).to(device=device, dtype=dtype).eval()


@torch.inference_mode()
def run_block(block: torch.nn.Module, x: torch.Tensor) -> None:
    """One synchronized forward of a lone block."""
    block(x)
    synchronize(x.device)
