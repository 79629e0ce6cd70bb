"""Non-uniform widths: selective layers and global allocation keep exactly the neurons they
say (pruning equals zeroing them, layer by layer), hit the uniform level's total exactly,
and reload through ``load_pruned`` with identical logits - while a plain ``from_pretrained``
of the same folder refuses (size mismatch) instead of loading random weights."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from glu_families import FAMILY_NAMES, family_model, logits, token_batches, zeroed
from transformers import AutoModelForCausalLM

from glu_prune.catalog.families import family_of
from glu_prune.core.arithmetic import config_param_count, kept_count
from glu_prune.core.calibration import collect_stats
from glu_prune.core.mlps import LAYER_WIDTHS_FIELD, glu_mlps, width_of
from glu_prune.core.nonuniform import (allocate_global, default_min_width, load_pruned,
                                       prune_global, prune_selective)
from glu_prune.core.prune import count_params, prune_glu_mlp


def _four_layers(name: str = "llama"):
    extra = {}
    if name == "ministral":  # its test shape names 2 layers' attention kinds
        extra["layer_types"] = ["sliding_attention", "full_attention"] * 2
    return family_model(name, num_hidden_layers=4, **extra)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_global_pruning_equals_zeroing_and_keeps_the_uniform_total(name):
    model = _four_layers(name)
    ids = token_batches(1, seed=7)[0]
    pruned = copy.deepcopy(model)
    report = prune_global(pruned, pct=40, method="maw", min_width=8)
    widths = [width_of(m) for m in glu_mlps(pruned)]
    assert sum(widths) == 4 * kept_count(96, pct=40) == 4 * 58  # exactly the uniform total
    assert len(set(widths)) > 1 and min(widths) >= 8, widths
    assert report.layer_widths == widths == [len(k) for k in report.kept_indices]
    assert getattr(pruned.config, LAYER_WIDTHS_FIELD) == widths
    assert getattr(pruned.config, family_of(pruned.config).width_field) == max(widths)
    torch.testing.assert_close(logits(pruned, ids), logits(zeroed(model, report.kept_indices),
                                                             ids), atol=1e-5, rtol=1e-5)
    # same parameters as uniform pruning at the level, counted and from the config
    uniform = copy.deepcopy(model)
    prune_glu_mlp(uniform, pct=40)
    assert count_params(pruned) == count_params(uniform) == report.total_params_after
    assert config_param_count(pruned.config) == count_params(pruned)


def test_selective_pruning_touches_only_the_listed_layers():
    model = _four_layers()
    ids = token_batches(1, seed=5)[0]
    pruned = copy.deepcopy(model)
    report = prune_selective(pruned, pct=40, layers=[2, 0], method="maw")
    assert [width_of(m) for m in glu_mlps(pruned)] == [58, 96, 58, 96]
    assert report.layer_widths == [58, 96, 58, 96]
    assert report.pct == pytest.approx(100 * 2 * 38 / (4 * 96))
    for i in (1, 3):  # untouched layers are the very same tensors' values
        for (k, a), b in zip(glu_mlps(model)[i].state_dict().items(),
                             glu_mlps(pruned)[i].state_dict().values()):
            assert torch.equal(a, b), (i, k)
    torch.testing.assert_close(logits(pruned, ids), logits(zeroed(model, report.kept_indices),
                                                             ids), atol=1e-5, rtol=1e-5)
    assert config_param_count(pruned.config) == count_params(pruned)


def test_selective_pruning_of_every_layer_is_uniform_pruning():
    model, uniform = _four_layers(), _four_layers()
    report = prune_selective(model, pct=40, layers=[0, 1, 2, 3])
    want = prune_glu_mlp(uniform, pct=40)
    assert report.layer_widths is None and report.kept_indices == want.kept_indices
    assert not hasattr(model.config, LAYER_WIDTHS_FIELD) and model.config.intermediate_size == 58


@pytest.mark.parametrize("name", ["llama", "phi3", "gemma2", "qwen3"])
def test_loader_round_trip_is_exact_and_plain_from_pretrained_refuses(name, tmp_path):
    model = _four_layers(name)
    prune_global(model, pct=40, min_width=8)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved[LAYER_WIDTHS_FIELD] == [width_of(m) for m in glu_mlps(model)]
    reloaded = load_pruned(tmp_path, dtype=torch.float32)
    reloaded.config._attn_implementation = "eager"
    assert [width_of(m) for m in glu_mlps(reloaded)] == saved[LAYER_WIDTHS_FIELD]
    ids = token_batches(1, seed=3)[0]
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_loader_refuses_a_folder_whose_weights_do_not_match_its_widths(tmp_path):
    model = _four_layers()
    prune_global(model, pct=40, min_width=8)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[LAYER_WIDTHS_FIELD] = list(reversed(config[LAYER_WIDTHS_FIELD]))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_pruned(tmp_path, dtype=torch.float32)


def test_flap_global_reloads_with_its_bias(tmp_path):
    model = _four_layers()
    stats = collect_stats(model, token_batches(), progress=False)
    report = prune_global(model, pct=40, method="flap", min_width=8, stats=stats)
    assert report.compensated and report.layer_widths
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path, dtype=torch.float32)
    reloaded.config._attn_implementation = "eager"
    ids = token_batches(1, seed=4)[0]
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), atol=0, rtol=0)


def test_allocation_standardises_scores_within_each_layer():
    # layer 1's raw scores are 100x layer 0's; standardised, both rank the same, so the
    # extra neurons split evenly instead of all going to the loud layer
    quiet = torch.tensor([1.0, 2.0, 3.0, 4.0])
    kept = allocate_global([quiet, quiet * 100], total=4, min_width=1)
    assert [k.tolist() for k in kept] == [[2, 3], [2, 3]]
    # a layer whose scores stand out within it wins the spare slots
    kept = allocate_global([torch.tensor([0.0, 0.0, 0.0, 9.0]), quiet], total=3, min_width=1)
    assert [k.tolist() for k in kept] == [[3], [2, 3]]


def test_default_minimum_width_is_a_tenth():
    assert default_min_width(96) == 10 and default_min_width(8192) == 820
    model = _four_layers()
    report = prune_global(model, pct=80)
    assert min(report.layer_widths or [0]) >= 10 and sum(report.layer_widths) == 4 * 20


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: prune_global(m, pct=40, min_width=59), r"minimum width of 59 in each of 4 "
                                                        r"layers keeps 236 .* at most 58"),
    (lambda m: prune_global(m, pct=40, min_width=0), r"min_width must be in 1\.\.96"),
    (lambda m: prune_global(m, pct=40, min_width=True), r"min_width must be an integer"),
    (lambda m: prune_selective(m, pct=40, layers=[]), r"no layers to prune"),
    (lambda m: prune_selective(m, pct=40, layers=[4]), r"index 4 out of range.*0\.\.3"),
    (lambda m: prune_selective(m, pct=40, layers=[1, 1]), r"duplicate layer indices \[1\]"),
    (lambda m: prune_global(m, pct=100), r"pct must be in \[0, 100\)"),
])
def test_bad_requests_fail_in_one_line_and_change_nothing(call, message):
    model = _four_layers()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message) as info:
        call(model)
    assert "\n" not in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    _four_layers().save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("shape", "args"), [
    ("global", ["--global", "--min-width", "8"]),
    ("global", ["--global", "--min-width=8"]),
    ("selective", ["--layers", "0,2"]),
    ("selective", ["--layers=0,2"]),
])
def test_cli_saves_each_shape_and_it_reloads(llama_folder, tmp_path, capsys, shape, args):
    from glu_prune.cli import main

    out = tmp_path / "out"
    assert main(["prune", str(llama_folder), "--pct", "40", *args, "--out", str(out)]) == 0
    assert "per layer (load it with glu_prune.load_pruned)" in capsys.readouterr().out
    report = json.loads((out / "prune_report.json").read_text())
    assert report["shape"] == shape and report["pct_requested"] == 40
    widths = report["layer_widths"]
    if shape == "selective":
        assert widths == [58, 96, 58, 96]
    else:
        assert sum(widths) == 4 * 58 and min(widths) >= 8
    reloaded = load_pruned(out, dtype=torch.float32)
    assert [width_of(m) for m in glu_mlps(reloaded)] == widths
    assert count_params(reloaded) == report["total_params_after"]


@pytest.mark.parametrize(("args", "message"), [
    (["--pct", "40", "--global", "--layers", "0"], "--global allocates over all layers"),
    (["--pct", "40", "--min-width", "8"], "--min-width is the floor of --global"),
    (["--expansion-ratio", "1", "--global"], "takes --pct"),
    (["--pct", "40", "--global", "--stream"], "prunes in memory"),
    (["--pct", "40", "--layers", "0,x"], "--layers '0,x': give comma-separated"),
    (["--pct", "40", "--layers", "9"], "index 9 out of range"),
    (["--pct", "40", "--global", "--min-width", "59"], "at most 58"),
    (["--depth", "1", "--global"], "drop them with --depth"),
])
def test_cli_shape_errors_are_one_line(llama_folder, tmp_path, capsys, args, message):
    from glu_prune.cli import main

    out = tmp_path / "out"
    code = main(["prune", str(llama_folder), *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
