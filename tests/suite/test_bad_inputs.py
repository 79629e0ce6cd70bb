"""Bad input gets a clear error naming the value and what is valid; the model is unchanged."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from glu_prune import load_model, prune_glu_mlp
from glu_prune.core.prune import glu_mlps, slice_mlp

pytestmark = pytest.mark.invariants


@pytest.fixture
def tiny():
    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    return model


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kwargs,message", [
    ({"pct": -1}, r"pct must be in \[0, 100\), got -1"),
    ({"pct": 100}, r"pct must be in \[0, 100\), got 100"),
    ({"pct": float("nan")}, r"pct must be in \[0, 100\), got nan"),
    ({}, r"exactly one of pct or expansion_ratio"),
    ({"pct": 10, "expansion_ratio": 2.0}, r"exactly one of pct or expansion_ratio"),
    ({"expansion_ratio": 4.0}, r"expansion_ratio must be in \(0, 4\).*got 4.0"),
    ({"expansion_ratio": 5.5}, r"expansion_ratio must be in \(0, 4\).*got 5.5"),
    ({"pct": 10, "method": "magnitude"}, r"unknown importance method 'magnitude'; known: "
                                         r"act, flap, l2, l2_full, maw, maw_hybrid, pon, "
                                         r"random, vow, wanda_sp"),
    ({"pct": 10, "round_to": 0}, r"round_to must be an integer >= 1, got 0"),
])
def test_bad_arguments_leave_model_unchanged(tiny, kwargs, message):
    before = _snapshot(tiny)
    size = tiny.config.intermediate_size
    with pytest.raises(ValueError, match=message):
        prune_glu_mlp(tiny, **kwargs)
    after = tiny.state_dict()
    assert tiny.config.intermediate_size == size
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_model_without_glu_mlp():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    # the family description says why, before any change
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported \(its MLP is "
                                         r"not gated"):
        prune_glu_mlp(gpt2, pct=10)


def test_mixed_intermediate_sizes(tiny):
    slice_mlp(glu_mlps(tiny)[1], torch.arange(100))
    before = _snapshot(tiny)
    with pytest.raises(ValueError, match=r"mixed intermediate sizes \[100, 512\]"):
        prune_glu_mlp(tiny, pct=10)
    after = tiny.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_expansion_ratio_maps_to_kept_size(tiny):
    report = prune_glu_mlp(tiny, expansion_ratio=2.5)
    assert report.intermediate_size_after == round(2.5 * tiny.config.hidden_size)
    assert report.expansion_ratio_after == 2.5
