"""Every supported family, in its real layout (random weights, 2 layers, tiny shapes):
pruning equals zeroing the removed neurons, the CLI's save reloads with plain transformers,
parameter counts from the config are exact, and unsupported families are refused in one line.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from glu_families import (FAMILY_NAMES, family_config, family_model, logits,
                          save_family_model, token_batches, zeroed)
from transformers import AutoConfig, AutoModelForCausalLM

from glu_prune.catalog.families import FAMILIES, UnsupportedFamily, family_of, set_depth
from glu_prune.catalog.models import get_model_spec, make_config
from glu_prune.cli import main
from glu_prune.core.arithmetic import config_param_count, expansion_table
from glu_prune.core.calibration import collect_stats
from glu_prune.core.loading import ArchitectureMismatch, check_architecture
from glu_prune.core.mlps import glu_mlps, layout_of
from glu_prune.core.prune import count_params, prune_glu_mlp


@pytest.mark.parametrize("method", ["maw", "wanda_sp"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_pruning_equals_zeroing_the_removed_neurons(name, method):
    model = family_model(name)
    ids = token_batches(1, seed=7)[0]
    stats = collect_stats(model, token_batches(), progress=False) if method != "maw" else None
    pruned = copy.deepcopy(model)
    report = prune_glu_mlp(pruned, pct=40, method=method, stats=stats)
    fam = family_of(model.config)
    assert getattr(pruned.config, fam.width_field) == report.intermediate_size_after == 58
    assert layout_of(glu_mlps(pruned)[0]).fused == fam.fused
    want = logits(zeroed(model, report.kept_indices), ids)
    assert not torch.allclose(want, logits(model, ids), atol=1e-3), "pruning changed nothing"
    torch.testing.assert_close(logits(pruned, ids), want, atol=1e-5, rtol=1e-5)
    assert count_params(pruned) == report.total_params_after


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_cli_save_reloads_with_plain_transformers(name, tmp_path, capsys):
    src = save_family_model(name, tmp_path / f"My-{name}")
    out = tmp_path / "pruned"
    assert main(["prune", str(src), "--pct", "40", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["model"] == f"my-{name}"  # the source's name, never a registered one
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    width = FAMILIES[name].width_field
    assert json.loads((out / "config.json").read_text())[width] == 58
    assert getattr(reloaded.config, width) == 58
    # the same pruning in memory gives the same logits as the reloaded save
    expected = family_model(name)
    expected.config._attn_implementation = reloaded.config._attn_implementation
    prune_glu_mlp(expected, pct=40)
    ids = token_batches(1, seed=3)[0]
    torch.testing.assert_close(logits(reloaded, ids), logits(expected, ids), atol=0, rtol=0)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_param_counts_from_the_config_are_exact(name):
    config = family_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert config_param_count(config) == count_params(model)
    row = expansion_table(config, [40])[0]
    small = family_config(name, **{FAMILIES[name].width_field: row["intermediate_size"]})
    with torch.device("meta"):
        assert row["total_params"] == count_params(AutoModelForCausalLM.from_config(small))


@pytest.mark.parametrize("model_type, why", [
    ("gpt2", "not gated"), ("phi", "not gated"), ("falcon", "not gated"),
    ("mixtral", "mixture-of-experts"), ("qwen3_moe", "mixture-of-experts"),
    ("gpt_oss", "mixture-of-experts"), ("bert", "")])
def test_unsupported_families_are_one_line_naming_them(model_type, why):
    with pytest.raises(UnsupportedFamily) as err:
        family_of(AutoConfig.for_model(model_type))
    msg = str(err.value)
    assert "\n" not in msg and repr(model_type) in msg and why in msg
    assert "supported: " in msg and "qwen2" in msg and "phi3" in msg


@pytest.mark.parametrize("name", ["qwen2", "phi3", "gemma2"])
def test_flap_is_refused_where_the_config_has_no_mlp_bias(name):
    model = family_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = collect_stats(model, token_batches(), progress=False)
    with pytest.raises(ValueError, match=r"no mlp_bias.*\(llama, granite\)"):
        prune_glu_mlp(model, pct=40, method="flap", stats=stats)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["llama", "granite"])
def test_flap_reloads_with_its_bias_where_the_config_has_mlp_bias(name, tmp_path):
    model = family_model(name)
    stats = collect_stats(model, token_batches(), progress=False)
    report = prune_glu_mlp(model, pct=40, method="flap", stats=stats)
    assert report.compensated and model.config.mlp_bias
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    reloaded.config._attn_implementation = "eager"
    ids = token_batches(1, seed=3)[0]
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_layer_lists_follow_a_cut_depth(name):
    """A registered shape cut to fewer layers keeps one layer_types entry per layer."""
    lists = {f: ["sliding_attention", "full_attention"] * 2
             for f in FAMILIES[name].per_layer_lists}
    config = family_config(name, num_hidden_layers=4, **lists)
    set_depth(config, 1)
    assert config.num_hidden_layers == 1
    for field in FAMILIES[name].per_layer_lists:
        assert len(getattr(config, field)) == 1
    with torch.device("meta"):
        AutoModelForCausalLM.from_config(config)  # a consistent config builds


def test_a_mistral_folder_is_not_the_tiny_llama(tmp_path):
    """Same seven shape fields, another model_type: the architecture check says so."""
    tiny = make_config("tiny-llama")
    mistral = AutoConfig.for_model("mistral", **{k: getattr(tiny, k) for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size", "tie_word_embeddings")})
    with pytest.raises(ArchitectureMismatch, match="model_type 'mistral' vs registered 'llama'"):
        check_architecture(mistral, get_model_spec("tiny-llama"))


def _bad_sources(tmp_path):
    """(argv MODEL, what the one line must say) for each kind of unusable source."""
    (tmp_path / "empty").mkdir()
    AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2).save_pretrained(
        tmp_path / "gpt2")
    AutoConfig.for_model("mixtral", num_hidden_layers=1, hidden_size=32,
                         intermediate_size=64).save_pretrained(tmp_path / "mixtral")
    corrupt = save_family_model("qwen2", tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    return [(str(tmp_path / "missing"), "missing: does not exist; valid: a model folder"),
            (str(tmp_path / "empty"), "no config.json in this folder"),
            (str(tmp_path / "gpt2"), "'gpt2' is not supported (its MLP is not gated"),
            (str(tmp_path / "mixtral"), "'mixtral' is not supported (a mixture-of-experts"),
            ("Qwen/Qwen2.5-0.5B-not-cached", "a hub id, but offline mode"),
            (str(corrupt), "its weights cannot be loaded")]


def test_bad_sources_exit_4_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("glu_prune.core.sources.hub_reachable", lambda: False)
    monkeypatch.setattr("glu_prune.core.sources.hub_offline", lambda: True)
    sources = _bad_sources(tmp_path)
    capsys.readouterr()  # the corrupt folder's save progress bar
    for source, says in sources:
        out = tmp_path / "out"
        assert main(["prune", source, "--pct", "40", "--out", str(out)]) == 4, source
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, (source, err)
        assert not out.exists(), "a bad source wrote something"
        if "weights" not in says:  # table reads the config alone
            assert main(["table", source]) == 4
            assert says in capsys.readouterr().err


def test_table_of_a_folder_comes_from_its_config_alone(tmp_path, capsys):
    folder = tmp_path / "shape-only"
    family_config("qwen3").save_pretrained(folder)  # no weights at all
    assert main(["table", str(folder), "--levels", "0,40"]) == 0
    text = capsys.readouterr().out
    assert f"{config_param_count(family_config('qwen3')):,}" in text and "58" in text


def test_a_shape_only_folder_prunes_with_random_weights(tmp_path, capsys):
    folder = tmp_path / "shape-only"
    family_config("phi3").save_pretrained(folder)
    out = tmp_path / "out"
    assert main(["prune", str(folder), "--pct", "40", "--weights", "random",
                 "--out", str(out)]) == 0
    assert AutoConfig.from_pretrained(out).intermediate_size == 58


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_streaming_prune_is_byte_identical_to_in_memory_in_every_family(name, tmp_path):
    """``prune FOLDER --stream`` reads tensor names from the family description (fused
    gate_up rows j and n + j included) and writes the bytes in-memory pruning writes."""
    src = save_family_model(name, tmp_path / f"my-{name}")
    assert main(["prune", str(src), "--pct", "40", "--stream", "--out", str(tmp_path / "s")]) == 0
    assert main(["prune", str(src), "--pct", "40", "--out", str(tmp_path / "m")]) == 0
    streamed, in_memory = (load_file(tmp_path / d / "model.safetensors") for d in "sm")
    assert streamed.keys() == in_memory.keys()
    for key, tensor in in_memory.items():
        assert torch.equal(streamed[key], tensor), key
    config = {d: json.loads((tmp_path / d / "config.json").read_text()) for d in "sm"}
    assert config["s"][FAMILIES[name].width_field] == config["m"][FAMILIES[name].width_field]
