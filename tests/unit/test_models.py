"""Unit tests of the model registry and loading (offline)."""

from __future__ import annotations

import pytest
import torch

from glu_prune import WeightsUnavailable, get_model_spec, load_model
from glu_prune.catalog.models import MODELS, make_config
from glu_prune.core.loading import ArchitectureMismatch, check_architecture


def test_registry():
    assert list(MODELS)[:4] == ["llama-3.2-1b", "llama-3.2-3b", "llama-3.2-1b-instruct",
                                "llama-3.2-3b-instruct"]
    spec = get_model_spec("llama-3.2-3b-instruct")
    assert spec.hf_id == "meta-llama/Llama-3.2-3B-Instruct" and spec.instruct
    assert spec.levels == (0, 10, 40, 60)
    assert get_model_spec("llama-3.2-1b").levels == (0, 10, 20, 30, 40, 50, 60)
    with pytest.raises(KeyError, match="unknown model 'gpt2'; known: llama-3.2-1b"):
        get_model_spec("gpt2")


@pytest.mark.parametrize("name,hidden,layers,heads,ratio", [
    ("llama-3.2-1b", 2048, 16, 32, 4.0), ("llama-3.2-3b", 3072, 28, 24, 8192 / 3072)])
def test_embedded_architectures(name, hidden, layers, heads, ratio):
    c = make_config(name)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (hidden, layers, heads)
    assert (c.num_key_value_heads, c.vocab_size, c.tie_word_embeddings) == (8, 128256, True)
    assert c.intermediate_size / c.hidden_size == ratio
    assert c.rope_parameters["rope_type"] == "llama3"


def test_random_weights_fewer_layers():
    model, tok = load_model("llama-3.2-1b", weights="random", num_layers=1, device="cpu",
                            dtype=torch.bfloat16)
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    assert model.dtype == torch.bfloat16
    assert tok is None  # never asks the hub for random weights
    again, _ = load_model("llama-3.2-1b", weights="random", num_layers=1, device="cpu",
                          dtype=torch.bfloat16)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight,
                       again.model.layers[0].mlp.up_proj.weight)


def test_weights_unavailable_names_model_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match=r"^llama-3.2-3b: .*GLU_PRUNE_MODELS_DIR"):
        load_model("llama-3.2-3b", model_dir=tmp_path)


def test_local_models_dir(tmp_path):
    model, _ = load_model("tiny-llama", weights="random", dtype=torch.float32, device="cpu")
    model.save_pretrained(tmp_path / "tiny-llama")
    loaded, _ = load_model("tiny-llama", model_dir=tmp_path, device="cpu")
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_bad_weights_argument():
    with pytest.raises(ValueError, match="weights must be 'auto' or 'random', got 'hub'"):
        load_model("tiny-llama", weights="hub")


@pytest.fixture
def tiny_saved_as_1b(tmp_path):
    """A models folder whose llama-3.2-1b/ holds the tiny model: wrong, not missing."""
    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    model.save_pretrained(tmp_path / "llama-3.2-1b")
    return tmp_path


@pytest.mark.parametrize("num_layers", [None, 2])
def test_wrong_model_in_models_dir_is_named(tiny_saved_as_1b, num_layers):
    # A reduced depth (perf runs) does not excuse a wrong model: the file's depth is checked.
    with pytest.raises(ArchitectureMismatch, match=(
            r"^llama-3.2-1b: the model at .*llama-3.2-1b is not llama-3.2-1b's registered "
            r"architecture: hidden_size 128 vs registered 2048, num_hidden_layers 4 vs "
            r"registered 16, .*intermediate_size 512 vs registered 8192, vocab_size 1280 vs "
            r"registered 128256$")):  # the library names no option: each interface adds its own
        load_model("llama-3.2-1b", model_dir=tiny_saved_as_1b, device="cpu",
                   num_layers=num_layers)


def test_wrong_model_fails_before_its_weights_load(tmp_path):
    folder = tmp_path / "llama-3.2-3b"
    make_config("llama-3.2-1b").save_pretrained(folder)  # a config and no weights at all
    with pytest.raises(ArchitectureMismatch, match=r"hidden_size 2048 vs registered 3072"):
        load_model("llama-3.2-3b", model_dir=tmp_path, device="cpu")


def test_saved_pruned_model_is_not_the_registered_one(tmp_path):
    from glu_prune import prune_glu_mlp

    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    prune_glu_mlp(model, pct=40)
    model.save_pretrained(tmp_path / "tiny-llama")
    with pytest.raises(ArchitectureMismatch, match=r": intermediate_size 308 vs registered 512$"):
        load_model("tiny-llama", model_dir=tmp_path, device="cpu")


def test_check_architecture_compares_layers_with_the_depth_asked_for():
    spec = get_model_spec("llama-3.2-1b")
    config = make_config("llama-3.2-1b", num_layers=2)  # what a 2-layer perf load carries
    check_architecture(config, spec, num_layers=2)
    with pytest.raises(ArchitectureMismatch, match=r": num_hidden_layers 2 vs requested 4$"):
        check_architecture(config, spec, num_layers=4)
    with pytest.raises(ArchitectureMismatch, match=r": num_hidden_layers 2 vs registered 16$"):
        check_architecture(config, spec)
    untied = make_config("llama-3.2-1b")
    untied.tie_word_embeddings = False
    with pytest.raises(ArchitectureMismatch, match=r"tie_word_embeddings False vs registered "
                                                   r"True"):
        check_architecture(untied, spec)


@pytest.mark.parametrize("name", list(MODELS))
def test_registered_configs_pass_their_own_check(name):
    check_architecture(make_config(name), get_model_spec(name))


# ---------------------------------------------------------------- offline mode vs unreachable


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    """An empty hub cache: nothing on this machine can provide the real weights."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("GLU_PRUNE_MODELS_DIR", raising=False)


def test_offline_mode_is_named_as_such_and_never_probes(monkeypatch, no_hub_cache):
    import socket

    from huggingface_hub import constants

    def connect(*args, **kwargs):
        raise AssertionError("offline mode must not probe the endpoint")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", connect)
    with pytest.raises(WeightsUnavailable) as err:
        load_model("llama-3.2-1b", device="cpu")
    assert str(err.value).startswith("llama-3.2-1b: offline mode (HF_HUB_OFFLINE")
    assert "unreachable" not in str(err.value)
    assert "unset HF_HUB_OFFLINE and run once online" in str(err.value)


def test_an_unreachable_hub_is_named_as_such(monkeypatch, no_hub_cache):
    from huggingface_hub import constants

    from glu_prune.core import loading as models

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models, "_endpoint_answers", lambda timeout: False)
    with pytest.raises(WeightsUnavailable, match=r"^llama-3.2-1b: the hub is unreachable and "
                                                 r"meta-llama/Llama-3.2-1B is not in the local "
                                                 r"hub cache; set GLU_PRUNE_MODELS_DIR"):
        load_model("llama-3.2-1b", device="cpu")


def test_weights_obtainable_from_a_models_dir_and_not_offline_without_one(tmp_path,
                                                                          monkeypatch):
    from glu_prune.core import loading as models

    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    assert not models.weights_obtainable("llama-3.2-1b", tmp_path)
    (tmp_path / "llama-3.2-1b").mkdir()
    (tmp_path / "llama-3.2-1b" / "config.json").write_text("{}")
    assert models.weights_obtainable("llama-3.2-1b", tmp_path)
