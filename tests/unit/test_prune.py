"""Unit tests of kept counts, selection, surgery and the config-only table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glu_prune.models import make_config
from glu_prune.prune import (config_param_count, decode_weight_bytes, expansion_table,
                             kept_count, prefill_flops, select_kept, slice_mlp)


@pytest.mark.parametrize("pct,kept", [(0, 8192), (10, 7373), (20, 6554), (30, 5735),
                                      (40, 4916), (50, 4096), (60, 3277), (99.99, 1)])
def test_kept_count_matches_published_sizes(pct, kept):
    assert kept_count(8192, pct=pct) == kept


def test_kept_count_never_removes_everything():
    assert kept_count(10, pct=99.9) == 1
    assert kept_count(1, pct=50) == 1


def test_kept_count_float_edge():
    # 0.29 * 100 is 28.999999999999996 in binary: the rule must still remove 29
    assert kept_count(100, pct=29) == 71


@pytest.mark.parametrize("pct,r,kept", [(10, 64, 7360), (10, 128, 7424), (40, 128, 4864),
                                        (40, 64, 4928), (99, 128, 128), (0, 128, 8192)])
def test_round_to(pct, r, kept):
    assert kept_count(8192, pct=pct, round_to=r) == kept


def test_round_to_capped_at_n():
    assert kept_count(500, pct=1, round_to=128) == 500


def test_expansion_ratio():
    assert kept_count(8192, expansion_ratio=2.4, hidden_size=2048) == 4915
    assert kept_count(8192, expansion_ratio=2.4, hidden_size=2048, round_to=128) == 4864
    with pytest.raises(ValueError, match="needs hidden_size"):
        kept_count(8192, expansion_ratio=2.0)


def test_select_kept_ties_go_to_lower_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert select_kept(scores, 2).tolist() == [1, 2]
    assert select_kept(scores, 4).tolist() == [1, 2, 3, 4]


def test_select_kept_ascending():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert select_kept(scores, 3).tolist() == [1, 2, 3]


class _MLP(nn.Module):
    def __init__(self, h: int = 4, n: int = 6, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(h, n, bias=bias)
        self.up_proj = nn.Linear(h, n, bias=bias)
        self.down_proj = nn.Linear(n, h, bias=bias)
        self.intermediate_size = n


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_slice_keeps_rows_columns_and_dtype(dtype):
    mlp = _MLP(bias=True).to(dtype)
    g, u, d = (mlp.gate_proj.weight.clone(), mlp.up_proj.weight.clone(),
               mlp.down_proj.weight.clone())
    gb, db = mlp.gate_proj.bias.clone(), mlp.down_proj.bias.clone()
    idx = torch.tensor([0, 2, 5])
    slice_mlp(mlp, idx)
    assert torch.equal(mlp.gate_proj.weight, g[idx]) and torch.equal(mlp.up_proj.weight, u[idx])
    assert torch.equal(mlp.down_proj.weight, d[:, idx])
    assert torch.equal(mlp.gate_proj.bias, gb[idx]) and torch.equal(mlp.down_proj.bias, db)
    assert mlp.gate_proj.weight.dtype == dtype
    assert (mlp.gate_proj.out_features, mlp.down_proj.in_features, mlp.intermediate_size) == \
        (3, 3, 3)


def test_param_count_formula_matches_real_module():
    from transformers import AutoModelForCausalLM

    config = make_config("llama-3.2-1b", num_layers=1)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert config_param_count(config) == real


def test_ideal_speedups_grow_with_pruning():
    config = make_config("llama-3.2-1b")
    rows = expansion_table(config, [0, 20, 40, 60])
    prefill = [r["ideal_prefill_speedup"] for r in rows]
    decode = [r["ideal_decode_speedup"] for r in rows]
    assert prefill[0] == decode[0] == 1.0
    assert prefill == sorted(prefill) and decode == sorted(decode)


def test_ideal_speedup_definitions():
    config = make_config("llama-3.2-1b")
    # decode reads every weight once: tied embeddings are read once, by the lm_head
    assert decode_weight_bytes(config, 8192) == 2 * 1_235_814_400
    # prefill FLOPs: MLP share at 8192 is 3*2048*8192 per layer per token, times 2
    mlp_only = prefill_flops(config, 8192, 1) - prefill_flops(config, 0, 1)
    assert mlp_only == 2 * 16 * 3 * 2048 * 8192
