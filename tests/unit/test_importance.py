"""Unit tests of the neuron-importance scorers on hand-made weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from glu_prune.core.calibration import LayerStats
from glu_prune.core.importance import (BIAS_COMPENSATED, CALIBRATED_SCORERS, SCORERS, get_scorer,
                                       needs_calibration, score)


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(3, 2, bias=False)
        self.up_proj = nn.Linear(3, 2, bias=False)
        self.down_proj = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.gate_proj.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]]))
            self.up_proj.weight.copy_(torch.tensor([[0.0, 1.0, -1.0], [-3.0, 0.0, 0.0]]))
            self.down_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 0.0]]))


def test_registry_names():
    assert sorted(SCORERS) == ["l2", "l2_full", "maw", "pon", "random", "vow"]
    assert sorted(CALIBRATED_SCORERS) == ["act", "flap", "maw_hybrid", "wanda_sp"]
    assert BIAS_COMPENSATED == {"flap"}
    with pytest.raises(ValueError, match="unknown importance method 'x'; known: act, "
                                         "flap, l2, l2_full, maw, maw_hybrid, pon, random, "
                                         "vow, wanda_sp"):
        get_scorer("x")
    assert needs_calibration("flap") and not needs_calibration("maw")


def test_maw():
    # neuron 0: (1 + |-2|) + (1 + |-1|) = 5; neuron 1: (0.3 + 0.1) + (0 + 3) = 3.4
    torch.testing.assert_close(score(_MLP(), "maw"), torch.tensor([5.0, 3.4]))


def test_vow():
    # sample variance (n - 1 = 2), as optipfair: neuron 0 gate mean -1/6, up mean 0
    g0 = ((1 + 1 / 6) ** 2 + (-2 + 1 / 6) ** 2 + (0.5 + 1 / 6) ** 2) / 2
    u0 = (0 + 1 + 1) / 2
    g1 = (0.01 + 0 + 0.01) / 2
    u1 = ((-3 + 1) ** 2 + 1 + 1) / 2
    torch.testing.assert_close(score(_MLP(), "vow"), torch.tensor([g0 + u0, g1 + u1]))


def test_pon():
    torch.testing.assert_close(score(_MLP(), "pon"), torch.tensor([3.5 * 2.0, 0.6 * 3.0]))


def test_l2_is_gate_norm_plus_up_norm():
    # optipfair's L2: the down column is not part of it
    n0 = (1 + 4 + 0.25) ** 0.5 + (0 + 1 + 1) ** 0.5
    n1 = (0.01 + 0.04 + 0.09) ** 0.5 + 9 ** 0.5
    torch.testing.assert_close(score(_MLP(), "l2"), torch.tensor([n0, n1]))


def test_l2_full_adds_the_down_column():
    n0 = (1 + 4 + 0.25) + (0 + 1 + 1) + (1 + 0 + 4)
    n1 = (0.01 + 0.04 + 0.09) + 9 + 4
    torch.testing.assert_close(score(_MLP(), "l2_full"), torch.tensor([n0, n1]).sqrt())


def test_random_is_seeded():
    mlp = _MLP()
    assert torch.equal(score(mlp, "random", seed=3), score(mlp, "random", seed=3))
    assert not torch.equal(score(mlp, "random", layer=0), score(mlp, "random", layer=1))


def test_scores_are_float32_even_for_bf16_weights():
    mlp = _MLP().to(torch.bfloat16)
    assert score(mlp, "maw").dtype == torch.float32


# ---------------------------------------------------------------- calibration-based


def _stats(h: torch.Tensor, batches: list[slice]) -> LayerStats:
    """LayerStats of activations ``h`` [sequences, seq, d_ff] written out by hand (float64)."""
    h = h.double()
    flat = h.reshape(-1, h.shape[-1])
    n = flat.shape[0]
    mean = flat.mean(0)
    return LayerStats(
        tokens=n, sequences=h.shape[0], sum=flat.sum(0), sum_abs=flat.abs().sum(0),
        sum_sq=flat.pow(2).sum(0), m2=(flat - mean).pow(2).sum(0),
        seq_abs_mean_sq=h.abs().mean(1).pow(2).sum(0),
        batch_l2_sum=sum(h[b].pow(2).sum((0, 1)).sqrt() for b in batches).float())


# two sequences of two tokens for the two neurons of _MLP
_H = torch.tensor([[[1.0, 0.0], [3.0, -2.0]],
                   [[-1.0, 4.0], [1.0, 2.0]]])


def test_act_is_l2_over_sequences_of_mean_abs():
    # neuron 0: per-sequence mean |h| = 2, 1; neuron 1: 1, 3
    stats = _stats(_H, [slice(0, 2)])
    torch.testing.assert_close(score(_MLP(), "act", stats=stats),
                               torch.tensor([5.0 ** 0.5, 10.0 ** 0.5]))


def test_wanda_sp():
    # mean_i |W_down[i, j]|: 1, 2/3; sqrt(sum h^2 / N): sqrt(12/4), sqrt(24/4)
    stats = _stats(_H, [slice(0, 2)])
    torch.testing.assert_close(score(_MLP(), "wanda_sp", stats=stats),
                               torch.tensor([3.0 ** 0.5, 2 / 3 * 6.0 ** 0.5]))


def test_flap_is_variance_times_column_energy():
    # Var_t h: neuron 0 mean 1 -> (0 + 4 + 4 + 0)/4 = 2; neuron 1 mean 1 -> (1 + 9 + 9 + 1)/4 = 5
    # sum_i W_down[i, j]^2: 5, 4
    stats = _stats(_H, [slice(0, 2)])
    torch.testing.assert_close(score(_MLP(), "flap", stats=stats), torch.tensor([10.0, 20.0]))


def test_maw_hybrid():
    # peak-to-peak: gate (3, 0.4), up (2, 3), down columns (2, 2); each over its max (+1e-8),
    # summed, times X_d (the collector's sum of per-batch norms, given here directly)
    stats = dataclasses.replace(_stats(_H, [slice(0, 2)]), batch_l2_sum=torch.tensor([2.0, 3.0]))
    structural = torch.tensor([1 + 2 / 3 + 1, 0.4 / 3 + 1 + 1])
    torch.testing.assert_close(score(_MLP(), "maw_hybrid", stats=stats),
                               structural * torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("method", sorted(CALIBRATED_SCORERS))
def test_calibrated_method_without_stats_names_the_problem(method):
    with pytest.raises(ValueError, match=f"method '{method}' is calibration-based and needs "
                                         f"the layer's activation statistics"):
        score(_MLP(), method)


def test_stats_of_another_width_are_refused():
    stats = _stats(torch.ones(1, 2, 3), [slice(0, 1)])
    with pytest.raises(ValueError, match="statistics are for 3 neurons, but this MLP has 2"):
        score(_MLP(), "act", stats=stats)


def test_calibrated_scoring_never_mutates():
    mlp, stats = _MLP(), _stats(_H, [slice(0, 2)])
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    for method in CALIBRATED_SCORERS:
        score(mlp, method, stats=stats)
    assert all(torch.equal(v, mlp.state_dict()[k]) for k, v in before.items())
