"""Unit tests of the neuron-importance scorers on hand-made weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glu_prune.importance import SCORERS, get_scorer, score


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
    assert sorted(SCORERS) == ["l2", "maw", "pon", "random", "vow"]
    with pytest.raises(ValueError, match="unknown importance method 'x'; known methods: l2"):
        get_scorer("x")


def test_maw():
    # neuron 0: (1 + |-2|) + (1 + |-1|) = 5; neuron 1: (0.3 + 0.1) + (0 + 3) = 3.4
    torch.testing.assert_close(score(_MLP(), "maw"), torch.tensor([5.0, 3.4]))


def test_vow():
    g0, u0 = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, -1.0])
    g1, u1 = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([-3.0, 0.0, 0.0])
    expected = torch.stack([g0.var(unbiased=False) + u0.var(unbiased=False),
                            g1.var(unbiased=False) + u1.var(unbiased=False)])
    torch.testing.assert_close(score(_MLP(), "vow"), expected)


def test_pon():
    torch.testing.assert_close(score(_MLP(), "pon"), torch.tensor([3.5 * 2.0, 0.6 * 3.0]))


def test_l2():
    n0 = (1 + 4 + 0.25) + (0 + 1 + 1) + (1 + 0 + 4)
    n1 = (0.01 + 0.04 + 0.09) + 9 + 4
    torch.testing.assert_close(score(_MLP(), "l2"), torch.tensor([n0, n1]).sqrt())


def test_random_is_seeded():
    mlp = _MLP()
    assert torch.equal(score(mlp, "random", seed=3), score(mlp, "random", seed=3))
    assert not torch.equal(score(mlp, "random", layer=0), score(mlp, "random", layer=1))


def test_scores_are_float32_even_for_bf16_weights():
    mlp = _MLP().to(torch.bfloat16)
    assert score(mlp, "maw").dtype == torch.float32
