"""The suite's variants of a model folder built by streaming (``VariantCache(stream_dir=...)``,
``--glu-stream``): the same model as an in-memory build, placed when asked, each streamed
folder removed with its model, shapes that cannot stream refused, never built in memory
behind the user's back."""

from __future__ import annotations

import gc
import logging

import pytest
import torch
from memory_probe import extra_peak_bytes
from transformers import AutoModelForCausalLM, LlamaConfig

from glu_prune.core.placement import Placement
from glu_prune.core.stream_variants import layer_shard_size
from glu_prune.core.variants import VariantCache, VariantId


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _logits(model, ids):
    with torch.inference_mode():
        return model(ids).logits


IDS = torch.randint(0, 1280, (2, 20), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("vid", [VariantId("tiny-llama", "maw", 0),
                                 VariantId("tiny-llama", "maw", 40),
                                 VariantId("tiny-llama", "maw", 40, 64)], ids=lambda v: v.slug)
def test_a_streamed_variant_is_the_in_memory_one(vid, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="glu_prune.core.stream_variants"):
        streamed = VariantCache(device="cpu", stream_dir=str(tmp_path / "stream")).get(vid)
    how = "loaded" if vid.is_base else "streamed"
    assert f"{how} {vid.slug} from " in caplog.text  # not an in-memory build
    assert len(list((tmp_path / "stream").glob("*/config.json"))) == (0 if vid.is_base else 1)
    memory = VariantCache(device="cpu").get(vid)
    a, b = _state(streamed.model), _state(memory.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fields = ("intermediate_size_after", "total_params_before", "total_params_after",
              "mlp_params_before", "mlp_params_after", "pct", "method", "round_to")
    assert [getattr(streamed.report, f) for f in fields] == \
           [getattr(memory.report, f) for f in fields]
    if vid.pct:
        assert streamed.report.kept_indices == memory.report.kept_indices
    assert streamed.base_config.intermediate_size == 512  # the unpruned model's


def test_a_calibrated_variant_streams_layer_by_layer_to_the_same_model(tmp_path):
    vid = [v for v in _calibrated_ids() if v.pct == 40][0]
    streamed = VariantCache(device="cpu", stream_dir=str(tmp_path / "s")).get(vid)
    memory = VariantCache(device="cpu").get(vid)
    assert streamed.report.kept_indices == memory.report.kept_indices
    torch.testing.assert_close(_logits(streamed.model, IDS), _logits(memory.model, IDS),
                               rtol=0, atol=1e-5)


def _calibrated_ids() -> list[VariantId]:
    from glu_prune.core.variants import select_variants

    return select_variants(["tiny-llama"], ["wanda_sp"], [0, 40])


def test_each_streamed_folder_goes_with_its_model(tmp_path):
    cache = VariantCache(device="cpu", stream_dir=str(tmp_path / "stream"))
    cache.get(VariantId("tiny-llama", "maw", 40))
    assert len(list((tmp_path / "stream").iterdir())) == 1  # written, then loaded
    cache.get(VariantId("tiny-llama", "maw", 50))  # the previous variant is released
    gc.collect()
    assert [p.name.startswith("tiny-llama-maw-p50-")
            for p in (tmp_path / "stream").iterdir()] == [True]
    cache.clear()
    gc.collect()
    assert not list((tmp_path / "stream").iterdir())


def test_a_streamed_variant_is_placed_by_transformers_over_cpu_and_disk(tmp_path):
    vid = VariantId("tiny-llama", "maw", 40)
    placement = Placement("sequential", (("cpu", "2MB"),), str(tmp_path / "offload"))
    placed = VariantCache(device="cpu", stream_dir=str(tmp_path / "s"),
                          placement=placement).get(vid)
    assert set(placed.model.hf_device_map.values()) == {"cpu", "disk"}
    memory = VariantCache(device="cpu").get(vid)
    torch.testing.assert_close(_logits(placed.model, IDS), _logits(memory.model, IDS),
                               rtol=0, atol=1e-6)


def test_shapes_that_cannot_stream_are_refused_and_reduced_depth_builds_in_memory(
        tmp_path, caplog):
    cache = VariantCache(device="cpu", stream_dir=str(tmp_path / "s"))
    with pytest.raises(ValueError, match=r"tiny-llama-depth-last-d1: a depth variant cannot "
                                         r"be built by streaming .*without --glu-stream"):
        cache.get(VariantId("tiny-llama", "last", 0, shape="depth", layers=1))
    with caplog.at_level(logging.INFO, logger="glu_prune.core.variants"):
        built = cache.get(VariantId("tiny-llama", "maw", 40), num_layers=2)
    assert built.model.config.num_hidden_layers == 2
    assert "built in memory (a reduced-depth run)" in caplog.text
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


CHILD = """
import gc, sys, tempfile
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from glu_prune.catalog.sources import register, spec_from_source
from glu_prune.core.placement import Placement
from glu_prune.core.stream_variants import layer_shard_size
from glu_prune.core.variants import VariantCache, VariantId

def status(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])

# every code path warmed up on a toy model first: the baseline holds the libraries
toy = AutoModelForCausalLM.from_config(LlamaConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=1, vocab_size=64))
with torch.inference_mode():
    toy(torch.randint(0, 60, (1, 4)))
del toy
gc.collect()
spec = register(spec_from_source(sys.argv[1]))
base, work = status("VmRSS"), tempfile.mkdtemp(dir=sys.argv[2])
cache = VariantCache(device="cpu", stream_dir=work + "/stream", placement=Placement(
    "sequential", (("cpu", "8MB"),), work + "/offload"))
built = cache.get(VariantId(spec.name, "maw", 40))
with torch.inference_mode():
    built.model(torch.randint(0, 1000, (1, 16)))
assert set(built.model.hf_device_map.values()) == {"cpu", "disk"}
print(base, status("VmHWM"))
"""


def test_a_streamed_and_placed_variant_never_holds_the_model(tmp_path):
    """Build p40 of a 48-layer folder streamed and placed (8 MB of CPU, the rest on disk)
    and run it: the extra peak stays under the CPU cap plus one layer's MLP three times
    over (read, scored, sliced), both embeddings, the 16 MiB copy buffer and one shard of
    the variant (about a layer: loading maps a shard at a time), on a model four times
    that bound (in memory the same build peaks at about twice the model)."""
    hidden, width, vocab = 256, 1024, 1024
    config = LlamaConfig(hidden_size=hidden, intermediate_size=width, num_hidden_layers=48,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    src = tmp_path / "big-llama"
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(
        src, max_shard_size="20MB")
    model_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    bound = ((8 << 20) + 3 * (3 * hidden * width * 4) + 2 * vocab * hidden * 4 + (16 << 20)
             + layer_shard_size(src))
    assert model_bytes > 4 * bound, (model_bytes, bound)
    extra = extra_peak_bytes(CHILD, src, tmp_path, mmap_threshold=1 << 16)
    assert extra < bound, (extra, bound, model_bytes)
