"""Depth pruning: selection methods, surgery that transformers runs natively, and its
equivalence with the unpruned model whose removed layers are replaced by identity."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from glu_families import family_model, token_batches
from transformers import AutoModelForCausalLM, AutoTokenizer

from glu_prune import load_model, tiny
from glu_prune.cli import main
from glu_prune.core.depth import (angular_distances, block_influence, decoder_layers,
                                  remove_layers, select_layers)

SLIDING = ["gemma2", "gemma3_text", "qwen3", "mistral"]
_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]


def _sliding_model(name: str):
    extra = {"layer_types": _TYPES}
    if name == "mistral":  # mistral has no layer_types; its window applies to every layer
        extra = {}
    if name == "qwen3":
        extra["use_sliding_window"] = True
        extra["sliding_window"] = 8
    return family_model(name, num_hidden_layers=4, max_position_embeddings=128, **extra)


def _tiny():
    model, _tok = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    return model.eval()


def _identity_hooks(model, removed: list[int]):
    """Make layers ``removed`` return their input hidden states unchanged."""
    def hook(_m, args, kwargs, out):
        hs = args[0] if args else kwargs["hidden_states"]
        return (hs, *out[1:]) if isinstance(out, tuple) else hs
    layers = decoder_layers(model)
    return [layers[i].register_forward_hook(hook, with_kwargs=True) for i in removed]


def _check_equivalence(model, removed: list[int], ids: torch.Tensor) -> None:
    pruned = copy.deepcopy(model)
    remove_layers(pruned, removed)
    handles = _identity_hooks(model, removed)
    with torch.no_grad():
        want = model(input_ids=ids, use_cache=False).logits
    for h in handles:
        h.remove()
    with torch.no_grad():
        got = pruned(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_depth_equivalence_on_the_tiny_model():
    model = _tiny()
    n = len(decoder_layers(model))
    ids = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    for removed in ([n - 1], [0, n // 2], list(range(1, n)))[: 3 if n > 2 else 1]:
        _check_equivalence(model, removed, ids)


@pytest.mark.parametrize("name", SLIDING)
def test_depth_equivalence_on_sliding_window_families(name):
    model = _sliding_model(name)
    ids = token_batches(1, seq=40)[0]  # longer than the window: sliding layers differ
    _check_equivalence(model, [1, 2], ids)
    _check_equivalence(model, [0], ids)


@pytest.mark.parametrize("name", SLIDING)
def test_layer_types_follow_the_kept_layers(name):
    model = _sliding_model(name)
    before = list(getattr(model.config, "layer_types", None) or [])
    kept = remove_layers(model, [0, 3])
    assert kept == [1, 2] and model.config.num_hidden_layers == 2
    assert len(decoder_layers(model)) == 2
    if before:
        assert model.config.layer_types == [before[1], before[2]]
    idx = [m.layer_idx for layer in decoder_layers(model) for m in layer.modules()
           if isinstance(getattr(m, "layer_idx", None), int)]
    assert sorted(set(idx)) == [0, 1]


def test_qwen2_max_window_layers_counts_the_kept_layers():
    model = family_model("qwen2", num_hidden_layers=4, max_window_layers=2)
    remove_layers(model, [0])
    assert model.config.max_window_layers == 1 and len(model.config.layer_types) == 3


@pytest.mark.parametrize("name", ["tiny", *SLIDING])
def test_cached_generation_equals_uncached_after_depth_pruning(name):
    model = _tiny() if name == "tiny" else _sliding_model(name)
    remove_layers(model, [1])
    ids = token_batches(1, seq=6)[0][:1]
    kw = {"max_new_tokens": 32, "min_new_tokens": 32, "do_sample": False,
          "pad_token_id": 0}
    with torch.no_grad():
        cached = model.generate(ids, use_cache=True, **kw)
        uncached = model.generate(ids, use_cache=False, **kw)
    assert cached.shape[1] == ids.shape[1] + 32
    assert torch.equal(cached, uncached)


def test_saved_depth_pruned_model_reloads_with_plain_from_pretrained(tmp_path):
    model = _sliding_model("gemma3_text")
    remove_layers(model, [2])
    model.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    back.config._attn_implementation = "eager"
    assert back.config.num_hidden_layers == 3 and len(back.config.layer_types) == 3
    ids = token_batches(1, seq=20)[0]
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids).logits, model(input_ids=ids).logits)


def test_selection_methods():
    model = family_model("llama", num_hidden_layers=5)
    batches = token_batches(2)
    assert select_layers(model, 2, "last") == [3, 4]
    assert select_layers(model, 2, "first") == [0, 1]
    bi = block_influence(model, batches)
    assert select_layers(model, 2, "bi", batches) == sorted(torch.argsort(bi)[:2].tolist())
    ang = angular_distances(model, batches, 2)
    assert ang.shape == (4,)
    start = int(torch.argmin(ang))
    assert select_layers(model, 2, "angular", batches) == [start, start + 1]


@pytest.mark.parametrize("removed, message", [
    ([], "no layers to remove"),
    ([0, 1, 2], "cannot remove all 3 layers"),
    ([3], "layer index 3 out of range"),
    ([-1], "layer index -1 out of range"),
    ([1, 1], r"duplicate layer indices \[1\]"),
])
def test_bad_removals_are_one_line_errors(removed, message):
    model = family_model("llama", num_hidden_layers=3)
    with pytest.raises(ValueError, match=message) as err:
        remove_layers(model, removed)
    assert "\n" not in str(err.value)
    assert len(decoder_layers(model)) == 3  # untouched


def test_bad_depths_and_methods():
    model = family_model("llama", num_hidden_layers=3)
    for n in (0, 3):
        with pytest.raises(ValueError, match="out of range"):
            select_layers(model, n, "last")
    with pytest.raises(ValueError, match="unknown layer selection method 'nope'"):
        select_layers(model, 1, "nope")
    with pytest.raises(ValueError, match="needs calibration batches"):
        select_layers(model, 1, "bi")


@pytest.mark.parametrize("how", [["--depth", "1", "--method", "bi"],
                                 ["--depth", "1", "--method", "angular"],
                                 ["--remove-layers", "0"]])
def test_cli_depth_prune_saves_a_plain_transformers_folder(how, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prune", "tiny-llama", *how, "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    back = AutoModelForCausalLM.from_pretrained(out)
    assert back.config.num_hidden_layers == report["layers_after"] \
        == report["layers_before"] - 1 == len(report["kept_layers"])
    assert "depth-pruned" in capsys.readouterr().out


@pytest.mark.parametrize("layers, message", [
    ("0,0", "duplicate layer indices"), ("99", "layer index 99 out of range"),
    ("a", "give comma-separated layer indices")])
def test_cli_bad_layers_exit_with_the_usage_code_and_one_line(layers, message, tmp_path,
                                                              capsys):
    code = main(["prune", "tiny-llama", "--remove-layers", layers, "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_removing_every_layer_is_refused(tmp_path, capsys):
    model = family_model("llama", num_hidden_layers=2)
    model.save_pretrained(tmp_path / "src")
    capsys.readouterr()  # the save's progress bar
    code = main(["prune", str(tmp_path / "src"), "--remove-layers", "0,1", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot remove all 2 layers" in err and err.count("\n") == 1


def test_cli_depth_by_block_influence_calibrates_on_the_given_source_offline(tmp_path, capsys):
    # a folder of the user's own (C4 by default, unreachable offline): --calib-source picks
    # the text, as for the calibration-based width methods
    src = tmp_path / "my-qwen"
    family_model("qwen2", num_hidden_layers=4, vocab_size=1280).save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny.MODEL_DIRS["tiny-llama"]).save_pretrained(src)
    out = tmp_path / "out"
    assert main(["prune", str(src), "--depth", "1", "--method", "bi", "--calib-source",
                 "tinycorpus", "--calib-sequences", "4", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["layers_after"] == 3 and len(report["removed_layers"]) == 1
    code = main(["prune", str(src), "--depth", "1", "--method", "last", "--calib-source",
                 "tinycorpus", "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert code == 2 and "--calib-source given, but --method last uses no calibration data" in err
