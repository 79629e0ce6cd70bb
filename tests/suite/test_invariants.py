"""Pruning invariants: correct to the last neuron, on the tiny model and the real shapes.

Real 1B/3B shapes use random weights (the invariants do not depend on weight values)
with 2 layers for the logit checks, and meta tensors (no memory) at full depth for counts.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from glu_prune import expansion_table, get_model_spec, load_model, prune_glu_mlp
from glu_prune.core.importance import SCORERS
from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import kept_count
from glu_prune.core.matching import depth_param_count, width_param_count
from glu_prune.core.mlps import decoder_layers, down_linear, gate_up_weights, width_of
from glu_prune.core.prune import count_params, glu_mlps, plan_pruning

pytestmark = pytest.mark.invariants

PUBLISHED = Path(__file__).parents[1] / "data" / "expansion_rates_published.json"
# float32 logits of the sliced model vs the zeroed model differ only by summation order
# inside the down_proj matmul (fewer terms); 1e-5 relative + 1e-5 absolute covers that.
ATOL = RTOL = 1e-5
SHAPES = {  # name -> (weights, layers) for the logit-level checks
    "tiny-llama": ("auto", None),
    "llama-3.2-1b": ("random", 2),
    "llama-3.2-3b": ("random", 2),
}


@pytest.fixture(scope="module", params=list(SHAPES), ids=lambda n: f"{n}-shape")
def base(request):
    """(name, model) in float32 on the CPU; shared by a module, never mutated by tests."""
    weights, layers = SHAPES[request.param]
    model, _ = load_model(request.param, weights=weights, num_layers=layers,
                          dtype=torch.float32, device="cpu")
    yield request.param, model
    del model


def _ids(model, seq: int = 24) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (2, seq), generator=gen)


@torch.no_grad()
def _logits(model, ids) -> torch.Tensor:
    return model(ids).logits


# ---------------------------------------------------------------- per variant


def _width_counts(variant) -> None:
    """Every layer keeps k neurons, the config says k, and counts match the expansion table."""
    k = variant.report.intermediate_size_after
    for mlp in glu_mlps(variant.model):  # split or fused, as the family describes it
        gate, up = gate_up_weights(mlp)
        assert gate.shape == up.shape == (k, variant.report.hidden_size)
        assert down_linear(mlp).weight.shape == (variant.report.hidden_size, k)
    assert variant.model.config.intermediate_size == k
    row, = expansion_table(make_config(variant.id.model), [variant.pct],
                           round_to=variant.round_to)
    assert row["intermediate_size"] == k
    assert row["total_params"] == variant.report.total_params_after


def _depth_counts(variant) -> None:
    """``layers`` whole layers fewer, in the module list and the config; every MLP whole;
    the parameters the config-only arithmetic predicts (what equal-parameter matching used)."""
    config = make_config(variant.id.model)
    left = config.num_hidden_layers - variant.id.layers
    assert len(decoder_layers(variant.model)) == variant.model.config.num_hidden_layers == left
    assert len(variant.report.removed_layers) == variant.id.layers
    assert all(width_of(m) == config.intermediate_size for m in glu_mlps(variant.model))
    assert count_params(variant.model) == variant.report.total_params_after == \
        depth_param_count(config, variant.id.layers)


def _global_counts(variant) -> None:
    """Per-layer widths as reported, the same total neurons as uniform width at the level,
    hence exactly its parameter count."""
    config = make_config(variant.id.model)
    widths = [width_of(m) for m in glu_mlps(variant.model)]
    k = kept_count(config.intermediate_size, pct=variant.pct, round_to=variant.round_to)
    # a report names per-layer widths only when they differ (an allocation may be uniform)
    assert widths == (variant.report.layer_widths or [k] * len(widths))
    assert sum(widths) == k * config.num_hidden_layers
    assert count_params(variant.model) == variant.report.total_params_after
    if not variant.report.compensated:  # a compensating method adds down_proj biases
        assert variant.report.total_params_after == width_param_count(
            config, variant.pct, variant.round_to)


SHAPE_COUNTS = {"width": _width_counts, "depth": _depth_counts, "global": _global_counts}


def test_variant_shapes_and_counts(variant):
    """The variant has the sizes and parameter count its shape and level say."""
    SHAPE_COUNTS[variant.id.shape](variant)


# ---------------------------------------------------------------- logits


def test_zero_pct_is_bit_identical(base):
    name, model = base
    pruned = copy.deepcopy(model)
    report = prune_glu_mlp(pruned, pct=0)
    ids = _ids(model)
    assert report.intermediate_size_after == report.intermediate_size_before
    assert torch.equal(_logits(pruned, ids), _logits(model, ids))


@pytest.mark.parametrize("method,pct,round_to", [("maw", 40, 1), ("maw", 10, 64),
                                                  ("random", 60, 1)])
def test_pruned_equals_zeroed(base, method, pct, round_to):
    """Slicing neurons out == zeroing their down_proj columns in the unpruned model."""
    name, model = base
    pruned = copy.deepcopy(model)
    report = prune_glu_mlp(pruned, pct=pct, method=method, round_to=round_to)
    zeroed = copy.deepcopy(model)
    n = report.intermediate_size_before
    with torch.no_grad():
        for mlp, kept in zip(glu_mlps(zeroed), report.kept_indices):
            removed = sorted(set(range(n)) - set(kept))
            mlp.down_proj.weight[:, removed] = 0
    ids = _ids(model)
    expected, got = _logits(zeroed, ids), _logits(pruned, ids)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    # and pruning really changed the function (guards against a no-op on both sides)
    assert not torch.allclose(got, _logits(model, ids), atol=ATOL, rtol=RTOL)


def test_tiny_methods_equal_zeroed():
    """Every registered method passes the zeroed-equivalence check on the tiny model."""
    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    ids = _ids(model)
    for method in SCORERS:
        pruned = copy.deepcopy(model)
        report = prune_glu_mlp(pruned, pct=30, method=method)
        zeroed = copy.deepcopy(model)
        with torch.no_grad():
            for mlp, kept in zip(glu_mlps(zeroed), report.kept_indices):
                mask = torch.ones(report.intermediate_size_before, dtype=torch.bool)
                mask[kept] = False
                mlp.down_proj.weight[:, mask] = 0
        torch.testing.assert_close(_logits(pruned, ids), _logits(zeroed, ids),
                                   atol=ATOL, rtol=RTOL, msg=f"method {method}")


# ---------------------------------------------------------------- selection


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_kept_sets_are_nested(base, method):
    """A higher level keeps a subset of what a lower level keeps (deterministic scores)."""
    _, model = base
    previous = None
    for pct in (0, 10, 20, 30, 40, 50, 60):
        _, kept = plan_pruning(model, pct=pct, method=method)
        current = [set(k.tolist()) for k in kept]
        if previous is not None:
            assert all(c <= p for c, p in zip(current, previous)), f"{method} at {pct}%"
        previous = current


def _maw_reference(gate: np.ndarray, up: np.ndarray, k: int) -> list[int]:
    """MAW written independently: numpy float64, lexsort for (score desc, index asc)."""
    score = (gate.max(1) + np.abs(gate.min(1))) + (up.max(1) + np.abs(up.min(1)))
    order = np.lexsort((np.arange(len(score)), -score))
    return sorted(order[:k].tolist())


def test_maw_matches_independent_formula(base):
    _, model = base
    _, kept = plan_pruning(model, pct=40, method="maw")
    for layer, (mlp, idx) in enumerate(zip(glu_mlps(model), kept)):
        g = mlp.gate_proj.weight.detach().double().numpy()
        u = mlp.up_proj.weight.detach().double().numpy()
        assert idx.tolist() == _maw_reference(g, u, len(idx)), f"layer {layer}"


def test_scoring_never_mutates(base):
    _, model = base
    before = {k: v.clone() for k, v in model.state_dict().items() if "mlp" in k}
    for method in SCORERS:
        plan_pruning(model, pct=50, method=method)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


# ---------------------------------------------------------------- counts


def _meta_model(name: str):
    """Full-depth model on the meta device: real shapes, no memory, no weights."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(make_config(name))


@pytest.mark.parametrize("name", ["llama-3.2-1b", "llama-3.2-3b", "llama-3.2-1b-instruct",
                                  "llama-3.2-3b-instruct", "tiny-llama"])
def test_counts_equal_expansion_table(name):
    """Surgery on full-depth shapes gives the sizes and counts the config-only table predicts."""
    spec = get_model_spec(name)
    rows = expansion_table(make_config(name), spec.levels)
    for row in rows:
        model = _meta_model(name)
        # random scores are drawn on the CPU, so meta weights can be sliced
        report = prune_glu_mlp(model, pct=row["pct"], method="random")
        assert report.intermediate_size_after == row["intermediate_size"]
        assert report.total_params_after == row["total_params"]
        assert math.isclose(report.expansion_ratio_after, row["expansion_ratio"])


def _published() -> dict[tuple[str, int], dict]:
    data = json.loads(PUBLISHED.read_text())
    names = {"meta-llama/Llama-3.2-1B": "llama-3.2-1b", "meta-llama/Llama-3.2-3B": "llama-3.2-3b",
             "meta-llama/Llama-3.2-1B-Instruct": "llama-3.2-1b-instruct"}
    return {(names[m["base_model"]], m["pruning_pct"]): m for m in data["models"]}


@pytest.mark.parametrize("key", sorted(_published()), ids=lambda k: f"{k[0]}-p{k[1]}")
def test_counts_equal_published(key):
    """Kept sizes and parameter counts equal the study's (reference/expansion_rates.json)."""
    name, pct = key
    pub = _published()[key]
    model = _meta_model(name)
    report = prune_glu_mlp(model, pct=pct, method="random")
    assert report.total_params_before == pub["original_architecture"]["total_parameters"]
    assert report.intermediate_size_after == pub["pruned_architecture"]["intermediate_size"]
    assert report.total_params_after == pub["pruned_architecture"]["total_parameters"]
    row, = expansion_table(make_config(name), [pct])
    assert row["total_params"] == pub["pruned_architecture"]["total_parameters"]


# ---------------------------------------------------------------- round trip


def test_save_reload_round_trip(tmp_path):
    """save_pretrained -> from_pretrained: identical logits, tied embeddings, no lm_head copy."""
    from safetensors import safe_open

    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    prune_glu_mlp(model, pct=40, round_to=8)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert loaded.config.intermediate_size == model.config.intermediate_size
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = _ids(model)
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))
