"""Parity with optipfair 0.4.2's depth pruning: the same layers removed for last, first and
custom indices (``prune_model_depth``), and the same per-layer cosine scores as its
``analyze_layer_importance`` on the same batches."""

from __future__ import annotations

import copy

import pytest
import torch
from glu_families import family_model, token_batches

opf_depth = pytest.importorskip("optipfair.pruning.depth",
                                reason="optipfair is in the test extra: pip install -e '.[test]'")
if pytest.importorskip("optipfair").__version__ != "0.4.2":
    pytest.skip("parity is pinned to optipfair 0.4.2", allow_module_level=True)

from glu_prune.core.depth import block_influence, decoder_layers, remove_layers, select_layers


def _removed_by_identity(before: list, after: list) -> list[int]:
    kept = {id(m) for m in after}
    return [i for i, m in enumerate(before) if id(m) not in kept]


@pytest.mark.parametrize("name", ["llama", "qwen3", "gemma2"])
@pytest.mark.parametrize("how", [
    {"num_layers_to_remove": 2, "layer_selection_method": "last"},
    {"num_layers_to_remove": 2, "layer_selection_method": "first"},
    {"layer_indices": [1, 4], "layer_selection_method": "custom"},
])
def test_same_layers_removed_as_optipfair(name, how):
    model = family_model(name, num_hidden_layers=6)
    theirs = copy.deepcopy(model)
    before = list(decoder_layers(theirs))
    theirs = opf_depth.prune_model_depth(theirs, show_progress=False, **how)
    their_removed = _removed_by_identity(before, list(decoder_layers(theirs)))
    method = how["layer_selection_method"]
    ours = (how["layer_indices"] if method == "custom"
            else select_layers(model, how["num_layers_to_remove"], method))
    assert ours == their_removed
    kept = remove_layers(model, ours)
    assert model.config.num_hidden_layers == theirs.config.num_hidden_layers == len(kept)


@pytest.mark.parametrize("name", ["llama", "gemma3_text"])
def test_same_cosine_scores_as_analyze_layer_importance(name):
    model = family_model(name, num_hidden_layers=4)
    batches = token_batches(3, seq=16)
    theirs = opf_depth.analyze_layer_importance(
        model, [{"input_ids": b} for b in batches], layers_path="model.layers",
        show_progress=False)
    ours = block_influence(model, batches)
    assert sorted(theirs) == list(range(4))
    torch.testing.assert_close(ours, torch.tensor([theirs[i] for i in range(4)],
                                                  dtype=torch.float64), atol=1e-6, rtol=1e-6)
