"""Parity with optipfair 0.4.2: maw, vow, pon, l2 and maw_hybrid keep the neurons it keeps.

optipfair is the reference implementation of the study's methods. Its selection
(``prune_neuron_pairs``) scores a layer, removes ``int(pct/100 * n)`` neurons (at most n-1)
and keeps ``torch.topk(scores, k)`` sorted ascending. The tests call that function on our
models' layers (it builds new layers and leaves the given one alone) and read back which
rows it kept; for maw_hybrid its own hooks collect the activation norms from the same
batches our collector sees.
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

from glu_prune import load_model, prune_glu_mlp
from glu_prune.core.calibration import collect_stats
from glu_prune.core.calibration_data import CalibrationSettings, TinyCorpus, calibration_batches
from glu_prune.core.importance import score
from glu_prune.core.prune import glu_mlps, select_kept
from glu_prune.core.arithmetic import kept_count

# our name -> optipfair's name for its static importance functions
STATIC = {"maw": "MAW", "vow": "VOW", "pon": "PON", "l2": "L2"}
MODELS = ["tiny-llama", "llama-3.2-1b"]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    """The trained tiny model, and the 1B shape with random weights cut to 2 layers (fp32)."""
    if request.param == "tiny-llama":
        m, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    else:
        m, _ = load_model("llama-3.2-1b", weights="random", num_layers=2,
                          dtype=torch.float32, device="cpu")
    return m


@pytest.fixture(scope="module")
def batches():
    """Calibration batches from the tiny corpus (ids < 1280 suit both vocabularies); the
    uneven last batch matters, since optipfair sums per-batch norms."""
    _, tok = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    settings = CalibrationSettings(TinyCorpus(), n_sequences=5, seq_len=32, batch_size=3)
    return calibration_batches(settings, tok)


def _rows_kept(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    """Which rows of ``original`` make up ``pruned`` (rows of real weights are distinct)."""
    where = {row.numpy().tobytes(): j for j, row in enumerate(original.detach())}
    assert len(where) == original.shape[0], "duplicate gate rows: kept indices are ambiguous"
    return [where[row.numpy().tobytes()] for row in pruned.detach()]


def _optipfair_keeps(mlp, pct: float, **kwargs) -> list[int]:
    """Neuron indices optipfair's ``prune_neuron_pairs`` keeps in ``mlp``, ascending."""
    new_gate, _, _, k = opf.prune_neuron_pairs(mlp, pct, **kwargs)
    kept = _rows_kept(mlp.gate_proj.weight, new_gate.weight)
    assert len(kept) == k
    return kept


def _assert_no_tie_at_k(scores: torch.Tensor, k: int, where: str) -> None:
    """torch.topk orders ties arbitrarily; ours sends them to the lower index. Parity is only
    defined when the k-th and (k+1)-th scores differ, so say so if they do not."""
    top = torch.sort(scores, descending=True).values
    assert k == scores.numel() or top[k - 1] > top[k], f"{where}: tie at the k={k} boundary"


@pytest.mark.parametrize("pct", [10, 40, 60])
@pytest.mark.parametrize("method", sorted(STATIC))
def test_static_methods_keep_what_optipfair_keeps(model, method, pct):
    importance_fn = opf.IMPORTANCE_FUNCTIONS[STATIC[method]]
    for i, mlp in enumerate(glu_mlps(model)):
        ours = score(mlp, method)
        # the same numbers from optipfair's own function, not just the same ranking
        theirs = importance_fn(mlp.gate_proj.weight.float(), mlp.up_proj.weight.float())
        assert torch.equal(ours, theirs), f"layer {i}: {method} scores differ"
        k = kept_count(ours.numel(), pct=pct)
        _assert_no_tie_at_k(theirs, k, f"layer {i}")
        assert select_kept(ours, k).tolist() == _optipfair_keeps(
            mlp, pct, importance_fn=importance_fn), f"layer {i}, {method} at {pct}%"


def _optipfair_activation_norms(model, batches) -> dict[int, torch.Tensor]:
    """X_d as optipfair's data-driven pruning collects it (its hooks, its forward loop)."""
    device = next(model.parameters()).device
    handles = opf.setup_mlp_hooks_for_importance(model, device)
    try:
        opf.run_calibration_forward_passes(model, [{"input_ids": b} for b in batches], device,
                                           show_progress=False)
    finally:
        for h in handles:
            h.remove()
    return opf.get_activation_norms()


@pytest.mark.parametrize("pct", [40])
def test_maw_hybrid_keeps_what_optipfair_keeps(model, batches, pct):
    norms = _optipfair_activation_norms(model, batches)
    stats = collect_stats(model, batches, progress=False)
    for i, (mlp, s) in enumerate(zip(glu_mlps(model), stats)):
        assert torch.equal(s.batch_l2_sum, norms[i]), f"layer {i}: activation norms differ"
        ours = score(mlp, "maw_hybrid", stats=s)
        theirs = opf.compute_neuron_pair_importance_maw_hybrid(
            mlp.gate_proj.weight.float(), mlp.up_proj.weight.float(),
            mlp.down_proj.weight.float(), norms[i])
        assert torch.equal(ours, theirs), f"layer {i}: maw_hybrid scores differ"
        k = kept_count(ours.numel(), pct=pct)
        _assert_no_tie_at_k(theirs, k, f"layer {i}")
        assert select_kept(ours, k).tolist() == _optipfair_keeps(
            mlp, pct, activation_norms=norms[i]), f"layer {i}"


@pytest.mark.parametrize("method", sorted(STATIC))
def test_whole_model_pruning_matches_optipfair(method):
    """End to end on the tiny model: the same pruned weights and config."""
    base, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    prune_glu_mlp(ours, pct=40, method=method)
    opf.prune_model_mlp_glu(theirs, neuron_selection_method=STATIC[method],
                            pruning_percentage=40, show_progress=False)
    assert ours.config.intermediate_size == theirs.config.intermediate_size
    got, want = ours.state_dict(), theirs.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), method


def test_whole_model_maw_hybrid_pruning_matches_optipfair(batches):
    """End to end through prune_glu_mlp(stats=...) and optipfair's dataloader mode, both
    calibrating on the same batches: the same pruned weights and config."""
    base, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    report = prune_glu_mlp(ours, pct=40, method="maw_hybrid",
                           stats=collect_stats(base, batches, progress=False))
    assert not report.compensated
    opf.prune_model_mlp_glu(theirs, neuron_selection_method="MAW", pruning_percentage=40,
                            dataloader=[{"input_ids": b} for b in batches], show_progress=False)
    assert ours.config.intermediate_size == theirs.config.intermediate_size
    got, want = ours.state_dict(), theirs.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
