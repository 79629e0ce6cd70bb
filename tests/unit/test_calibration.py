"""Calibration data, streaming activation statistics, and FLAP's bias compensation."""

from __future__ import annotations

import copy
import dataclasses
import json
import weakref

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from glu_prune import load_model, prune_glu_mlp
from glu_prune.core.arithmetic import kept_count
from glu_prune.core.calibration import LayerStats, calibrate, collect_stats
from glu_prune.core.calibration_data import (HUB_DATASETS, CalibrationSettings, HubDataset,
                                             TextFile, Texts, TinyCorpus, calibration_batches,
                                             calibration_tokens, settings_for, source_from_name)
from glu_prune.core.compensate import add_bias_compensation
from glu_prune.core.importance import BIAS_COMPENSATED, CALIBRATED_SCORERS, score
from glu_prune.core.prune import glu_mlps, select_kept
from glu_prune.tiny import MODEL_DIRS

ATOL = RTOL = 1e-5  # fp32, as the suite's pruned == zeroed invariant


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    return model, tok


def _settings(**kw) -> CalibrationSettings:
    return CalibrationSettings(**{"source": TinyCorpus(), "n_sequences": 6, "seq_len": 32,
                                  "batch_size": 4, **kw})


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before: dict[str, torch.Tensor], config_before: dict) -> None:
    """Same weights (and no new ones), same config, no hook left behind."""
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():  # bit for bit, a planted NaN included
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, equal_nan=True, msg=k)
    assert model.config.to_dict() == config_before
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------- settings and sources


def test_tag_is_short_and_stable():
    assert CalibrationSettings(source=TinyCorpus()).tag == "c-tinycorpus-n128-l2048-b8-s0"
    assert CalibrationSettings().tag == "c-c4-n128-l2048-b8-s0"
    chat = CalibrationSettings(source=TinyCorpus(), n_sequences=16, seq_len=256, batch_size=4,
                               seed=3, chat_template=True)
    assert chat.tag == "c-tinycorpus-n16-l256-b4-s3-chat"


def test_text_sources_are_named_by_content_not_path(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cal.txt").write_text("same words")
    tag = TextFile(tmp_path / "a" / "cal.txt").tag
    assert tag == TextFile(tmp_path / "b" / "cal.txt").tag and str(tmp_path) not in tag
    assert tag.startswith("file-") and len(tag) == len("file-") + 8
    assert Texts(["x", "y"]).tag == Texts(("x", "y")).tag != Texts(("x", "z")).tag
    assert Texts(["x", "y"]).tag != Texts(["xy"]).tag


@pytest.mark.parametrize("kw,says", [
    ({"n_sequences": 0}, "n_sequences must be an integer >= 1, got 0"),
    ({"seq_len": 1}, "seq_len must be an integer >= 2, got 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"n_sequences": 2.5}, "n_sequences must be an integer >= 1, got 2.5"),
])
def test_settings_reject_bad_values(kw, says):
    with pytest.raises(ValueError, match=says):
        CalibrationSettings(**kw)


def test_settings_for_registered_models():
    tiny = settings_for("tiny-llama")
    assert (tiny.source, tiny.seq_len, tiny.chat_template) == (TinyCorpus(), 256, False)
    assert settings_for("tiny-llama-instruct").chat_template
    base = settings_for("llama-3.2-1b", n_sequences=32)
    assert base.source == HUB_DATASETS["c4"] and not base.chat_template and base.n_sequences == 32
    assert settings_for("llama-3.2-3b-instruct").chat_template


def test_source_from_name(tmp_path):
    path = tmp_path / "cal.txt"
    path.write_text("text")
    assert source_from_name("tinycorpus") == TinyCorpus()
    assert source_from_name("c4") is HUB_DATASETS["c4"]
    assert source_from_name(str(path)) == TextFile(path)
    with pytest.raises(ValueError, match="unknown calibration source 'nope'; valid: tinycorpus, "
                                         "c4, or the path of an existing text file"):
        source_from_name("nope")


def test_evaluation_splits_are_refused():
    with pytest.raises(ValueError, match="split 'test' of wikitext is an evaluation split"):
        HubDataset("wt", "wikitext", "wikitext-2-raw-v1", split="test")


def test_hub_dataset_loads_local_data_the_normal_way(tiny, tmp_path):
    """The real ``datasets.load_dataset`` path, on a local json file (nothing downloads here)."""
    _, tok = tiny
    rows = [{"text": f"Document number {i} talks about the river and the market."}
            for i in range(40)]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    source = HubDataset("local", "json", split="train", data_files=(("train", str(path)),))
    first = calibration_tokens(_settings(source=source, n_sequences=3), tok)
    again = calibration_tokens(_settings(source=source, n_sequences=3), tok)
    other = calibration_tokens(_settings(source=source, n_sequences=3, seed=1), tok)
    assert first.shape == (3, 32) and torch.equal(first, again)
    assert not torch.equal(first, other)  # the seed shuffles documents


# ---------------------------------------------------------------- token batches


def test_documents_are_packed_after_bos(tiny):
    _, tok = tiny
    docs = ("The sun was warm.", "Birds sang in the trees.", "It began to rain.") * 4
    tokens = calibration_tokens(_settings(source=Texts(docs), n_sequences=2, seq_len=8), tok)
    stream = [i for d in docs for i in tok(d, add_special_tokens=False)["input_ids"]
              + [tok.eos_token_id]]
    assert tokens.shape == (2, 8)
    assert tokens[:, 0].tolist() == [tok.bos_token_id] * 2
    assert tokens[:, 1:].flatten().tolist() == stream[:14]


def test_batches_follow_batch_size(tiny):
    _, tok = tiny
    batches = calibration_batches(_settings(), tok)
    assert [tuple(b.shape) for b in batches] == [(4, 32), (2, 32)]


def test_tiny_corpus_is_seeded(tiny):
    _, tok = tiny
    a, b = calibration_tokens(_settings(), tok), calibration_tokens(_settings(), tok)
    c = calibration_tokens(_settings(seed=1), tok)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.max()) < tok.vocab_size


def test_instruct_text_goes_through_the_chat_template():
    tok = AutoTokenizer.from_pretrained(MODEL_DIRS["tiny-llama-instruct"])
    settings = settings_for("tiny-llama-instruct", n_sequences=1, seq_len=256)
    text = tok.decode(calibration_tokens(settings, tok)[0])
    turn = tok.bos_token + "<|start_header_id|>user<|end_header_id|>"
    assert text.startswith(turn)
    assert "<|eot_id|>" + turn in text  # documents are whole turns, packed end to end


def test_chat_template_without_one_is_an_error(tiny):
    _, tok = tiny
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat_template=True but the tokenizer has no chat"):
        calibration_tokens(_settings(chat_template=True), plain)


@pytest.mark.parametrize("source,says", [
    (Texts(()), "calibration source 'texts-[0-9a-f]{8}' gave no text"),
    (Texts(("", "   ")), "gave no text"),
    (Texts(("Only a few words.",)), r"gave \d+ tokens; 6 sequences of 32 need 186: give more "
                                    r"text or lower n_sequences / seq_len"),
])
def test_empty_or_short_text_is_an_error(tiny, source, says):
    _, tok = tiny
    with pytest.raises(ValueError, match=says):
        calibration_tokens(_settings(source=source), tok)


def test_no_tokenizer_is_an_error():
    with pytest.raises(ValueError, match="needs the model's tokenizer and none was loaded"):
        calibration_tokens(_settings(), None)


# ---------------------------------------------------------------- statistics


def _captured(model, batches) -> list[list[torch.Tensor]]:
    """Every layer's down_proj input per batch, stored (test only: the reference)."""
    seen: list[list[torch.Tensor]] = [[] for _ in glu_mlps(model)]
    handles = [m.down_proj.register_forward_pre_hook(
        lambda _m, args, s=s: s.append(args[0].detach().double().clone()))
        for m, s in zip(glu_mlps(model), seen)]
    with torch.no_grad():
        for b in batches:
            model(input_ids=b)
    for h in handles:
        h.remove()
    return seen


def _assert_sum_close(got: torch.Tensor, want: torch.Tensor, abs_sum: torch.Tensor) -> None:
    """A signed sum cancels, so its float32 rounding is relative to sum |h|, not to the sum."""
    err = (got - want).abs()
    worst = float((err / abs_sum).max())
    assert bool((err <= 1e-6 * abs_sum).all()), f"worst error {worst:.2e} of sum |h|"


def test_stats_match_a_direct_computation(tiny):
    model, tok = tiny
    batches = calibration_batches(_settings(), tok)
    stats = collect_stats(model, batches, progress=False)
    for layer, (s, hs) in enumerate(zip(stats, _captured(model, batches))):
        h = torch.cat(hs)  # [sequences, seq, d_ff]
        flat = h.reshape(-1, h.shape[-1])
        assert (s.tokens, s.sequences, s.intermediate_size) == (6 * 32, 6, 512)
        close = dict(rtol=1e-5, atol=1e-9, msg=f"layer {layer}")
        _assert_sum_close(s.sum, flat.sum(0), flat.abs().sum(0))
        torch.testing.assert_close(s.var, flat.var(0, correction=0), **close)
        torch.testing.assert_close(s.sum_abs, flat.abs().sum(0), **close)
        torch.testing.assert_close(s.sum_sq, flat.pow(2).sum(0), **close)
        torch.testing.assert_close(s.seq_abs_mean_sq, h.abs().mean(1).pow(2).sum(0), **close)
        per_batch = sum(b.pow(2).sum((0, 1)).sqrt() for b in hs)
        torch.testing.assert_close(s.batch_l2_sum.double(), per_batch, **close)


def test_only_the_optipfair_norm_depends_on_batching(tiny):
    model, tok = tiny
    one = collect_stats(model, calibration_batches(_settings(batch_size=1), tok), progress=False)
    six = collect_stats(model, calibration_batches(_settings(batch_size=6), tok), progress=False)
    for a, b in zip(one, six):
        _assert_sum_close(a.sum, b.sum, b.sum_abs)
        for name in ("sum_abs", "sum_sq", "m2", "seq_abs_mean_sq"):  # sums of positive terms
            torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-9)
        assert not torch.allclose(a.batch_l2_sum, b.batch_l2_sum)  # a sum of per-batch norms


def test_statistics_stream_in_fixed_memory(tiny):
    """O(d_ff) per layer: the same fixed-size sums after 1 or 6 batches, and no activation
    outlives its forward pass (a stored one, or any view of it, would keep its storage alive)."""
    model, tok = tiny
    refs: list[weakref.ref] = []
    spies = [m.down_proj.register_forward_pre_hook(lambda _m, args: refs.append(
        weakref.ref(args[0].untyped_storage()))) for m in glu_mlps(model)]
    try:
        sizes = []
        for batch_size in (6, 1):
            stats = collect_stats(model, calibration_batches(_settings(batch_size=batch_size), tok),
                                  progress=False)
            assert all(t.shape == (512,) for s in stats for t in s.tensors())
            sizes.append(sum(t.numel() * t.element_size() for s in stats for t in s.tensors()))
    finally:
        for h in spies:
            h.remove()
    assert sizes[0] == sizes[1] == 4 * 512 * (5 * 8 + 4)  # 5 float64 sums + 1 float32
    assert len(refs) == 4 * (1 + 6) and all(r() is None for r in refs)


@pytest.mark.parametrize("batches,says", [
    ([], "no calibration batches: calibration-based methods need data"),
    ([torch.zeros(2, 0, dtype=torch.long)], r"calibration batch 0 is empty \(shape \(2, 0\)\)"),
    ([torch.ones(1, 8, dtype=torch.long), torch.full((1, 8), 1280)],
     r"calibration batch 1 has token ids in \[1280, 1280\], outside the model's vocabulary "
     r"\[0, 1279\]: wrong tokenizer\?"),
    ([torch.full((1, 8), -3)], r"token ids in \[-3, -3\], outside"),
    ([torch.ones(1, 8)], "must be a 2-D integer tensor of token ids"),
    ([torch.ones(8, dtype=torch.long)], "must be a 2-D integer tensor of token ids"),
    ([torch.ones(1, 1025, dtype=torch.long)], "has 1025 tokens per sequence; the model takes "
                                              r"at most 1024 \(max_position_embeddings\)"),
])
def test_bad_batches_leave_the_model_unchanged(tiny, batches, says):
    model, _ = tiny
    before, config = _snapshot(model), model.config.to_dict()
    with pytest.raises(ValueError, match=says):
        collect_stats(model, batches, progress=False)
    _assert_unchanged(model, before, config)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations_name_the_layer(tiny, bad):
    model = copy.deepcopy(tiny[0]).train()  # also: the train/eval mode is restored
    with torch.no_grad():
        glu_mlps(model)[1].gate_proj.weight[3, 0] = bad
    before, config = _snapshot(model), model.config.to_dict()
    with pytest.raises(ValueError, match=r"layer 1 \(model.layers.1.mlp.down_proj\): "
                                         r"calibration activations contain NaN or inf"):
        collect_stats(model, calibration_batches(_settings(), tiny[1]), progress=False)
    _assert_unchanged(model, before, config)
    assert model.training


@pytest.mark.parametrize("method", sorted(CALIBRATED_SCORERS))
def test_pruning_by_a_data_method_without_data_leaves_the_model_unchanged(tiny, method):
    model = copy.deepcopy(tiny[0])
    before, config = _snapshot(model), model.config.to_dict()
    with pytest.raises(ValueError, match=f"'{method}' is calibration-based and needs "
                                         f"calibration statistics: pass stats="):
        prune_glu_mlp(model, pct=40, method=method)
    _assert_unchanged(model, before, config)


# ---------------------------------------------------------------- pruning with statistics


@pytest.fixture(scope="module")
def tiny_stats(tiny):
    """The tiny model's statistics on the tiny corpus, through calibrate (so tagged)."""
    model, tok = tiny
    return calibrate(model, tok, _settings(), progress=False)


def test_calibrate_tags_the_statistics(tiny, tiny_stats):
    assert {s.tag for s in tiny_stats} == {_settings().tag}
    bare = collect_stats(tiny[0], calibration_batches(_settings(), tiny[1]), progress=False)
    assert all(s.tag is None for s in bare)
    for a, b in zip(bare, tiny_stats):
        assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))


@pytest.mark.parametrize("method", sorted(CALIBRATED_SCORERS))
def test_data_methods_prune_end_to_end_keeping_the_top_scores(tiny, tiny_stats, method):
    model = copy.deepcopy(tiny[0])
    k = kept_count(512, pct=40)
    want = [select_kept(score(m, method, stats=s), k)
            for m, s in zip(glu_mlps(model), tiny_stats)]
    report = prune_glu_mlp(model, pct=40, method=method, stats=tiny_stats)
    assert report.kept_indices == [w.tolist() for w in want]
    assert (report.intermediate_size_after, model.config.intermediate_size) == (k, k)
    assert all(m.gate_proj.out_features == m.down_proj.in_features == k for m in glu_mlps(model))
    assert report.compensated == (method in BIAS_COMPENSATED) == (method == "flap")
    assert report.calibration == _settings().tag
    assert model.config.to_dict().get("mlp_bias", False) == report.compensated
    d = report.to_dict(with_indices=False)
    assert d["calibration"] == _settings().tag and d.get("compensated", False) == report.compensated
    assert torch.isfinite(_logits(model, torch.arange(1, 17)[None])).all()


def test_weight_only_report_reads_as_before(tiny):
    report = prune_glu_mlp(copy.deepcopy(tiny[0]), pct=40, method="maw")
    assert (report.compensated, report.calibration) == (False, None)
    assert "compensated" not in report.to_dict() and "calibration" not in report.to_dict()


def _bad_stats(stats: list[LayerStats]):
    """(method, stats, error) triples: each must fail before any change."""
    wide = dataclasses.replace(stats[2], **{f: torch.cat([getattr(stats[2], f)] * 2)
                                            for f in _TENSOR_FIELDS})
    nan = dataclasses.replace(stats[3], sum=torch.full_like(stats[3].sum, float("nan")))
    empty = dataclasses.replace(stats[1], tokens=0)
    return [
        ("maw", stats, "'maw' is weight-only and does not use calibration data, but stats "
                       "were given"),
        ("random", stats, "'random' is weight-only"),
        ("flap", stats[:3], "for each of the 4 GLU layers, got 3"),
        ("act", stats[0], "for each of the 4 GLU layers, got one LayerStats"),
        ("wanda_sp", [*stats[:2], wide, stats[3]],
         "layer 2: calibration statistics are for 1024 neurons, but the layer has 512"),
        ("flap", [*stats[:3], nan], "layer 3: calibration statistics contain NaN or inf"),
        ("maw_hybrid", [stats[0], empty, *stats[2:]], "layer 1: calibration statistics saw no "
                                                      "tokens"),
        ("flap", [*stats[:3], "x"], "layer 3: calibration statistics must be a LayerStats"),
    ]


_TENSOR_FIELDS = ("sum", "sum_abs", "sum_sq", "m2", "seq_abs_mean_sq", "batch_l2_sum")


@pytest.mark.parametrize("case", range(8))
def test_bad_statistics_leave_the_model_unchanged(tiny, tiny_stats, case):
    model = copy.deepcopy(tiny[0])
    method, stats, says = _bad_stats(tiny_stats)[case]
    before, config = _snapshot(model), model.config.to_dict()
    with pytest.raises((ValueError, TypeError), match=says):
        prune_glu_mlp(model, pct=40, method=method, stats=stats)
    _assert_unchanged(model, before, config)


def test_nothing_removed_adds_no_bias(tiny, tiny_stats):
    model = copy.deepcopy(tiny[0])
    before, config = _snapshot(model), model.config.to_dict()
    report = prune_glu_mlp(model, pct=0, method="flap", stats=tiny_stats)
    assert (report.intermediate_size_after, report.compensated) == (512, False)
    _assert_unchanged(model, before, config)


# ---------------------------------------------------------------- bias compensation


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def compensated(tiny):
    """(unpruned, pruned-with-bias, kept, stats, held-out ids) on the tiny model."""
    model, tok = tiny
    stats = collect_stats(model, calibration_batches(_settings(), tok), progress=False)
    pruned = copy.deepcopy(model)
    report = prune_glu_mlp(pruned, pct=40, method="flap", stats=stats)
    assert report.compensated
    kept = [torch.tensor(idx) for idx in report.kept_indices]
    ids = calibration_tokens(_settings(n_sequences=2, seq_len=48, seed=7), tok)
    return model, pruned, kept, stats, ids


def test_compensated_model_equals_mean_pinned_activations(compensated):
    model, pruned, kept, stats, ids = compensated
    pinned = copy.deepcopy(model)
    for m, idx, s in zip(glu_mlps(pinned), kept, stats):
        removed = torch.ones(s.intermediate_size, dtype=torch.bool)
        removed[idx] = False
        mean = s.mean.float()

        def pin(_m, args, removed=removed, mean=mean):
            h = args[0].clone()
            h[..., removed] = mean[removed]
            return (h,)

        m.down_proj.register_forward_pre_hook(pin)
    expected = _logits(pinned, ids)
    torch.testing.assert_close(_logits(pruned, ids), expected, atol=ATOL, rtol=RTOL)
    # the bias matters: without it the pruned model is another function
    no_bias = copy.deepcopy(pruned)
    for m in glu_mlps(no_bias):
        m.down_proj.bias = None
    assert not torch.allclose(_logits(no_bias, ids), expected, atol=ATOL, rtol=RTOL)


def test_compensated_model_saves_and_reloads(compensated, tmp_path):
    _, pruned, _, _, ids = compensated
    pruned.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["mlp_bias"] is True
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    for m in glu_mlps(reloaded):
        assert m.gate_proj.bias is not None and not m.gate_proj.bias.any()
        assert m.up_proj.bias is not None and not m.up_proj.bias.any()
        assert m.down_proj.bias is not None and m.down_proj.bias.any()
    assert torch.equal(_logits(reloaded, ids), _logits(pruned, ids))


def _bad_compensation(n_layers: int, n: int):
    good_kept = [torch.arange(0, n, 2)] * n_layers
    good_means = [torch.zeros(n, dtype=torch.float64)] * n_layers
    nan_means = [*good_means[:-1], torch.full((n,), float("nan"), dtype=torch.float64)]
    return [
        (good_kept[:-1], good_means, f"for each of the {n_layers} GLU layers, got 3 and 4"),
        (good_kept, good_means[:2], "got 4 and 2"),
        (good_kept, nan_means, "layer 3: mean activations contain NaN or inf"),
        (good_kept, [torch.zeros(n + 1)] * n_layers,
         rf"layer 0: mean activations must have shape \({n},\), got \({n + 1},\)"),
        ([torch.tensor([0, n])] * n_layers, good_means,
         rf"layer 0: kept indices must be distinct and in \[0, {n - 1}\]"),
        ([torch.tensor([1, 1, 2])] * n_layers, good_means, r"\(1 repeated\)"),
        ([torch.tensor([0.0, 1.0])] * n_layers, good_means, "non-empty 1-D integer tensor"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_compensation_input_leaves_the_model_unchanged(tiny, case):
    model = copy.deepcopy(tiny[0])
    kept, means, says = _bad_compensation(4, 512)[case]
    before, config = _snapshot(model), model.config.to_dict()
    with pytest.raises(ValueError, match=says):
        add_bias_compensation(model, kept, means)
    _assert_unchanged(model, before, config)
