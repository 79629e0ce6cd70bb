"""Parity with optipfair 0.4.2 in every family it prunes (Llama, Mistral, Qwen2, Gemma):
for each method both have, pruning a random-weight model of the family's real layout gives
the same pruned weights and config as optipfair's ``prune_model_mlp_glu``.

(``test_optipfair_parity.py`` checks scores and kept sets layer by layer on the Llama
shapes; here the end-to-end result is compared, family by family.)
"""

from __future__ import annotations

import copy

import pytest
import torch

opf = pytest.importorskip("optipfair.pruning.mlp_glu",
                          reason="optipfair (the parity reference, in the test extra) is not "
                                 "installed")
if pytest.importorskip("optipfair").__version__ != "0.4.2":
    pytest.skip("parity is pinned to optipfair 0.4.2", allow_module_level=True)

from glu_families import family_model, token_batches  # noqa: E402

from glu_prune.core.calibration import collect_stats  # noqa: E402
from glu_prune.core.prune import prune_glu_mlp  # noqa: E402

OPTIPFAIR_FAMILIES = ["llama", "mistral", "qwen2", "gemma"]
STATIC = {"maw": "MAW", "vow": "VOW", "pon": "PON", "l2": "L2"}


def _same_weights(ours, theirs) -> None:
    assert ours.config.intermediate_size == theirs.config.intermediate_size
    got, want = ours.state_dict(), theirs.state_dict()
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"differing tensors: {differ[:4]}"


@pytest.mark.parametrize("method", sorted(STATIC))
@pytest.mark.parametrize("name", OPTIPFAIR_FAMILIES)
def test_static_methods_prune_as_optipfair_does(name, method):
    base = family_model(name)
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    prune_glu_mlp(ours, pct=40, method=method)
    opf.prune_model_mlp_glu(theirs, neuron_selection_method=STATIC[method],
                            pruning_percentage=40, show_progress=False)
    _same_weights(ours, theirs)


@pytest.mark.parametrize("name", OPTIPFAIR_FAMILIES)
def test_maw_hybrid_prunes_as_optipfair_does(name):
    """Both calibrate on the same batches (optipfair's dataloader mode is its maw_hybrid)."""
    base = family_model(name)
    batches = token_batches()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    prune_glu_mlp(ours, pct=40, method="maw_hybrid",
                  stats=collect_stats(base, batches, progress=False))
    opf.prune_model_mlp_glu(theirs, neuron_selection_method="MAW", pruning_percentage=40,
                            dataloader=[{"input_ids": b} for b in batches], show_progress=False)
    _same_weights(ours, theirs)
