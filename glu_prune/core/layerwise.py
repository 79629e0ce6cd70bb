"""Calibration statistics of a model on disk, run one decoder layer at a time.

The layer-wise scheme GPTQ-style tools use, without re-implementing any family's forward:

1. The model is built from its config with every parameter on the ``meta`` device (no
   memory) and every buffer real (rotary ``inv_freq``, Gemma's ``embed_scale`` are computed
   in ``__init__``); only the input embeddings are read from the shards.
2. The model's own forward runs once per calibration batch with each decoder layer replaced
   by a recorder: layer 0's input (the embedded tokens) and what the model passes to each
   layer (rotary tables, the attention mask of that layer's type in sliding-window
   families) are kept. The last recorder stops the forward, so the final norm and the head
   are never needed. Arguments equal across batches are kept once.
3. Then, layer by layer: its tensors are read, it runs on every batch's hidden states with
   that layer's recorded arguments (the same hooks and :class:`~glu_prune.core.calibration.
   Accumulator` as :func:`~glu_prune.core.calibration.collect_stats`), its outputs become the
   next layer's inputs, and the caller gets the loaded layer and its statistics before the
   layer is freed. Every layer sees the unpruned model's activations, as in-memory
   calibration does, so the statistics are the same bit for bit.

Memory: one decoder layer, the calibration hidden states (sequences x length x hidden in
the compute dtype) and the recorded arguments; the embeddings only while recording.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from glu_prune.catalog.families import family_of
from glu_prune.core.calibration import Accumulator, LayerStats, check_batches, check_finite, hooked
from glu_prune.core.mlps import decoder_layers, down_linear, width_of
from glu_prune.core.shards import Source, read_tensor

LOG = logging.getLogger(__name__)


def skeleton(config: Any, dtype: torch.dtype) -> nn.Module:
    """The CausalLM of ``config`` with parameters on ``meta`` and buffers computed for real."""
    # params only: the buffers are not in the checkpoint and are computed from the config
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(copy.deepcopy(config), dtype=dtype)
    return model.eval()


def load_module(module: nn.Module, prefix: str, src: Source, dtype: torch.dtype,
                device: torch.device | str) -> None:
    """Give ``module`` its tensors from the shards (names ``prefix`` + its state-dict keys),
    floating ones cast to ``dtype``, on ``device``; a parameter left on meta is an error."""
    state = {}
    for name, entry in src.entries.items():
        if name.startswith(prefix):
            t = read_tensor(entry)
            state[name[len(prefix):]] = t.to(device, dtype) if t.is_floating_point() \
                else t.to(device)
    module.load_state_dict(state, strict=False, assign=True)
    missing = [n for n, p in module.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"tensor {prefix}{missing[0]} is not in the source's shards "
                         f"({len(missing)} of the module's parameters are missing)")


def _move_buffers(model: nn.Module, device: torch.device | str) -> None:
    for name, buf in list(model.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, buf.to(device))


class _Stop(Exception):
    """Raised by the last recorder: the rest of the forward (norm, head) is not needed."""


class _Recorder(nn.Module):
    """Stands in for a decoder layer: keeps what it is called with (and layer 0's input in
    ``inputs``), passes the hidden states through."""

    def __init__(self, calls: list, inputs: list | None, last: bool) -> None:
        super().__init__()
        self.calls, self.inputs, self.last = calls, inputs, last

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.inputs is not None:  # layer 0: its input is the embedded batch
            if hidden_states.is_meta:
                raise ValueError("decoder layer 0 got meta activations: a module before the "
                                 "decoder layers has weights the layer-wise run did not load")
            self.inputs.append(hidden_states)
        self.calls.append((args, kwargs))
        if self.last:
            raise _Stop
        return hidden_states


class _Interner:
    """Equal tensors kept once: each batch's mask and rotary tables are usually the same."""

    def __init__(self) -> None:
        self.seen: dict[tuple, list[torch.Tensor]] = {}

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            same = self.seen.setdefault((obj.shape, obj.dtype, obj.device), [])
            for t in same:
                if t is obj or torch.equal(t, obj):
                    return t
            same.append(obj)
            return obj
        if isinstance(obj, (tuple, list)):
            return type(obj)(self(o) for o in obj)
        if isinstance(obj, dict):
            return {k: self(v) for k, v in obj.items()}
        return obj


def record_inputs(model: nn.Module, batches: Sequence[torch.Tensor],
                  device: torch.device | str) -> tuple[list[torch.Tensor], list[list]]:
    """Layer 0's input per batch, and per layer the ``(args, kwargs)`` of every batch, from
    the model's own forward (``model``: a skeleton whose input embeddings are loaded)."""
    layers = decoder_layers(model)
    real = list(layers)
    calls: list[list] = [[] for _ in real]
    hidden: list[torch.Tensor] = []
    for i in range(len(real)):
        layers[i] = _Recorder(calls[i], hidden if i == 0 else None, last=i == len(real) - 1)
    intern = _Interner()
    try:
        with torch.no_grad():
            for batch in batches:
                try:  # the same call as collect_stats makes
                    model(input_ids=batch.to(device), use_cache=False, logits_to_keep=1)
                except _Stop:
                    pass
                for per_layer in calls:
                    per_layer[-1] = intern(per_layer[-1])
    finally:
        for i, layer in enumerate(real):
            layers[i] = layer
    return hidden, calls


def _run_layer(layer: nn.Module, mlp: nn.Module, hidden: list[torch.Tensor], calls: list,
               acc: Accumulator) -> None:
    """Run ``layer`` on every batch in place of its input; ``acc`` gets the MLP's ``h``."""
    with hooked([mlp], [acc]), torch.no_grad():
        for b, (args, kwargs) in enumerate(calls):
            out = layer(hidden[b], *args, **kwargs)
            hidden[b] = out[0] if isinstance(out, tuple) else out


def layerwise_stats(src: Source, config: Any, batches: Sequence[torch.Tensor], *,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                    progress: bool = True) -> Iterator[tuple[int, nn.Module, LayerStats]]:
    """For each decoder layer in order: ``(index, the loaded layer, its LayerStats)``.

    The statistics equal :func:`~glu_prune.core.calibration.collect_stats`'s on the model
    loaded in ``dtype`` on ``device``. The layer's weights are freed when the caller asks
    for the next one, so read what is needed from it (scores, the ``down`` weight) first.
    """
    fam = family_of(config)
    model = skeleton(config, dtype)
    check_batches(model, batches)  # bad batches fail before any weight is read
    _move_buffers(model, device)
    emb = model.get_input_embeddings()
    emb_name = {id(m): n for n, m in model.named_modules()}[id(emb)]
    load_module(emb, f"{emb_name}.", src, dtype, device)
    hidden, calls = record_inputs(model, batches, device)
    emb.to("meta")  # the embeddings are not needed again: free them
    layers = decoder_layers(model)
    for i in tqdm(range(len(layers)), desc="layer-wise calibration", unit="layer",
                  disable=not progress, mininterval=10):
        layer, prefix = layers[i], f"{fam.layers}.{i}."
        load_module(layer, prefix, src, dtype, device)
        mlp = getattr(layer, fam.mlp)
        acc = Accumulator(width_of(mlp), down_linear(mlp).weight.device)
        _run_layer(layer, mlp, hidden, calls[i], acc)
        stats = acc.result()
        check_finite([stats], [f"{prefix}{fam.mlp}.{fam.down}"], first=i)
        yield i, layer, stats
        layer.to("meta")  # free the layer before the next is read
