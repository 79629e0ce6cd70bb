"""Unit tests of kept counts, selection, surgery and the config-only table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import (check_level, config_param_count, decode_weight_bytes,
                                       expansion_table, kept_count, prefill_flops)
from glu_prune.core.prune import glu_mlps, prune_glu_mlp, select_kept, slice_mlp
from glu_prune.core.calibration import LayerStats


@pytest.mark.parametrize("pct,kept", [(0, 8192), (10, 7373), (20, 6554), (30, 5735),
                                      (40, 4916), (50, 4096), (60, 3277), (99.99, 1)])
def test_kept_count_matches_published_sizes(pct, kept):
    assert kept_count(8192, pct=pct) == kept


def test_kept_count_never_removes_everything():
    assert kept_count(10, pct=99.9) == 1
    assert kept_count(2, pct=99) == 1


def test_kept_count_float_edge():
    # 0.29 * 100 is 28.999999999999996 in binary: the rule must still remove 29
    assert kept_count(100, pct=29) == 71


@pytest.mark.parametrize("pct,r,kept", [(10, 64, 7360), (10, 128, 7424), (40, 128, 4864),
                                        (40, 64, 4928), (99, 128, 128), (0, 128, 8192)])
def test_round_to(pct, r, kept):
    assert kept_count(8192, pct=pct, round_to=r) == kept


def test_round_to_capped_at_n():
    assert kept_count(500, pct=30, round_to=128) == 384
    assert kept_count(8192, pct=1, round_to=128) == 8064  # 8110 -> nearest multiple


@pytest.mark.parametrize("n,kwargs,says", [
    # round_to at or above the size: every rounding keeps everything
    (512, {"pct": 40, "round_to": 512}, r"round_to=512 is at or above the intermediate size 512"),
    (8, {"pct": 40, "round_to": 128}, r"round_to=128 is at or above the intermediate size 8"),
    # rounding back up to n at pct > 0
    (500, {"pct": 1, "round_to": 128}, r"pct=1 with round_to=128 keeps k=500 of the n=500 "
                                       r"neurons: nothing would be pruned.*smaller round_to"),
    (512, {"pct": 10, "round_to": 256}, r"keeps k=512 of the n=512"),
    # the floor of a tiny pct removes nothing
    (512, {"pct": 0.1}, r"pct=0.1 with round_to=1 keeps k=512 of the n=512 neurons"),
    (1, {"pct": 50}, r"keeps k=1 of the n=1 neurons"),
    (8192, {"expansion_ratio": 3.9999, "hidden_size": 2048},
     r"expansion_ratio=3.9999 with round_to=1 keeps k=8192 of the n=8192"),
])
def test_pruning_that_would_not_prune_is_an_error(n, kwargs, says):
    with pytest.raises(ValueError, match=says):
        kept_count(n, **kwargs)


def test_pct_zero_may_keep_everything_with_rounding():
    assert kept_count(8192, pct=0, round_to=128) == 8192


@pytest.mark.parametrize("kwargs,says", [
    ({"pct": True}, r"pct must be a number in \[0, 100\), got True \(a bool\)"),
    ({"pct": False}, r"got False \(a bool\)"),
    ({"pct": 10, "round_to": True}, r"round_to must be an integer >= 1, got True"),
    ({"expansion_ratio": True, "hidden_size": 2048}, r"expansion_ratio must be in .*got True"),
])
def test_bools_are_not_numbers_here(kwargs, says):
    with pytest.raises(ValueError, match=says):
        kept_count(8192, **kwargs)


def test_check_level_needs_no_size():
    check_level(40, 128)
    check_level(None, 1)
    with pytest.raises(ValueError, match=r"pct must be in \[0, 100\), got 100"):
        check_level(100)


def test_expansion_ratio():
    assert kept_count(8192, expansion_ratio=2.4, hidden_size=2048) == 4915
    assert kept_count(8192, expansion_ratio=2.4, hidden_size=2048, round_to=128) == 4864
    with pytest.raises(ValueError, match="needs hidden_size"):
        kept_count(8192, expansion_ratio=2.0)


def test_select_kept_ties_go_to_lower_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert select_kept(scores, 2).tolist() == [1, 2]
    assert select_kept(scores, 4).tolist() == [1, 2, 3, 4]


def test_select_kept_refuses_nan_and_bad_k():
    with pytest.raises(ValueError, match=r"layer 2: 1 of 4 importance scores are NaN"):
        select_kept(torch.tensor([0.1, float("nan"), 0.5, 0.7]), 2, name="layer 2")
    with pytest.raises(ValueError, match=r"1 <= k <= its length, got shape \(4,\) and k=5"):
        select_kept(torch.tensor([0.1, 0.9, 0.5, 0.7]), 5)


def test_nan_weights_in_one_layer_name_it_and_leave_the_model_unchanged():
    from transformers import AutoModelForCausalLM

    config = make_config("tiny-llama", num_layers=3)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.model.layers[1].mlp.gate_proj.weight[7, 3] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"layer 1 \(model\.layers\.1\.mlp\), maw: 1 of 512 "
                                         r"importance scores are NaN"):
        prune_glu_mlp(model, pct=40)
    after = model.state_dict()
    assert model.config.intermediate_size == 512
    assert all(torch.allclose(v, after[k], rtol=0, atol=0, equal_nan=True)
               for k, v in before.items())
    assert [m.gate_proj.out_features for m in glu_mlps(model)] == [512] * 3


def _random_model(num_layers: int = 2):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(make_config("tiny-llama", num_layers=num_layers))


def _stats(n: int, value: float = 1.0) -> LayerStats:
    """Synthetic statistics of one layer of width ``n`` (16 tokens of h = value)."""
    full = torch.full((n,), value, dtype=torch.float64)
    return LayerStats(16, 1, full * 16, full.abs() * 16, full * full * 16, torch.zeros(n,
                      dtype=torch.float64), full * full, (full * 4).float())


def _assert_refused(model, says: str, **kwargs) -> None:
    """The call fails naming the problem, and the model keeps every weight and its config."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    with pytest.raises(ValueError, match=says):
        prune_glu_mlp(model, pct=40, **kwargs)
    after = model.state_dict()
    assert after.keys() == before.keys() and model.config.to_dict() == config
    assert all(torch.equal(v, after[k]) for k, v in before.items())


@pytest.mark.parametrize("method", ["maw", "vow", "pon", "l2", "l2_full", "random"])
def test_weight_only_methods_refuse_calibration_data(method):
    model = _random_model()
    _assert_refused(model, f"'{method}' is weight-only and does not use calibration data, but "
                           f"stats were given; drop stats= or use a calibration-based method: "
                           f"act, flap, maw_hybrid, wanda_sp",
                    method=method, stats=[_stats(512)] * 2)


@pytest.mark.parametrize("method", ["act", "wanda_sp", "flap", "maw_hybrid"])
def test_statistics_of_the_wrong_width_are_refused(method):
    model = _random_model()
    _assert_refused(model, "layer 1: calibration statistics are for 256 neurons, but the layer "
                           "has 512: collect them on the model being pruned",
                    method=method, stats=[_stats(512), _stats(256)])
    _assert_refused(model, "need calibration statistics for each of the 2 GLU layers, got 3",
                    method=method, stats=[_stats(512)] * 3)
    _assert_refused(model, "layer 0: calibration statistics contain NaN or inf",
                    method=method, stats=[_stats(512, float("inf")), _stats(512)])


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
