"""Unit tests of the variant matrix and slugs."""

from __future__ import annotations

import gc

import pytest

from glu_prune.core import variants
from glu_prune.core.calibration_data import CalibrationSettings, settings_for
from glu_prune.plugin.options import parse_list
from glu_prune.core.loading import WeightsUnavailable
from glu_prune.core.variants import (VariantCache, VariantId, select_variants,
                                     variant_slug)


def test_slug():
    assert variant_slug("llama-3.2-1b", "maw", 40) == "llama-3.2-1b-maw-p40"
    assert variant_slug("llama-3.2-1b", "maw", 40, 128) == "llama-3.2-1b-maw-p40-r128"
    assert variant_slug("tiny-llama", "vow", 12.5) == "tiny-llama-vow-p12_5"


def test_level_is_the_slug_tail():
    assert VariantId("llama-3.2-1b", "maw", 40).level == "p40"
    assert VariantId("llama-3.2-1b", "maw", 40, 128).level == "p40-r128"
    assert VariantId("tiny-llama", "vow", 12.5).level == "p12_5"
    vid = VariantId("llama-3.2-1b", "maw", 40, 128)
    assert vid.slug == f"{vid.model}-{vid.method}-{vid.level}"


def test_level_zero_appears_once():
    got = select_variants(["llama-3.2-1b-instruct"], ["maw", "vow"], None, [1, 128])
    slugs = [v.slug for v in got]
    assert slugs[0] == "llama-3.2-1b-instruct-maw-p0"
    assert sum(s.endswith("-p0") for s in slugs) == 1
    assert len(slugs) == 1 + 3 * 2 * 2


def test_levels_filter_and_errors():
    got = select_variants(["llama-3.2-1b", "llama-3.2-1b-instruct"], ["maw"], [20, 40])
    assert [v.slug for v in got] == ["llama-3.2-1b-maw-p20", "llama-3.2-1b-maw-p40",
                                     "llama-3.2-1b-instruct-maw-p40"]
    with pytest.raises(ValueError, match=r"levels \[35.0\] are not registered"):
        select_variants(["llama-3.2-1b"], ["maw"], [35.0])
    with pytest.raises(KeyError, match="unknown model 'llama-9b'; known: llama-3.2-1b"):
        select_variants(["llama-9b"], ["maw"])
    with pytest.raises(ValueError, match="unknown importance method 'foo'"):
        select_variants(["llama-3.2-1b"], ["foo"])


def test_parse_list():
    assert parse_list(None) is None and parse_list(" ") is None
    assert parse_list("1, 128", int) == [1, 128]


def test_variant_id_base():
    assert VariantId("tiny-llama", "vow", 40).base_slug == "tiny-llama-vow-p0"


@pytest.fixture
def collections(monkeypatch) -> list[int]:
    """Counts the variant cache's garbage collections (0.5 s each on a suite's full heap)."""
    counted: list[int] = []
    real = gc.collect

    def collect(*args):
        counted.append(1)
        return real(*args)
    monkeypatch.setattr(variants.gc, "collect", collect)
    return counted


def test_missing_weights_are_decided_once_per_model(monkeypatch, collections):
    attempts = []

    def load_model(name, **kwargs):
        attempts.append(name)
        raise WeightsUnavailable(f"{name}: offline mode and no local copy")
    monkeypatch.setattr(variants, "load_model", load_model)
    cache = VariantCache(device="cpu")
    raised = []
    for vid in select_variants(["llama-3.2-1b"], ["maw"]):  # 7 levels, as 7 tests would
        with pytest.raises(WeightsUnavailable, match=r"^llama-3.2-1b: offline mode") as err:
            cache.get(vid)
        raised.append(err.value)
    assert attempts == ["llama-3.2-1b"]  # one load attempt for the model
    assert collections == []  # nothing was resident: skipping costs no collection
    assert len({id(e) for e in raised}) == len(raised)  # fresh errors: no frames piled up


def test_collections_only_when_a_model_is_dropped(collections):
    cache = VariantCache(device="cpu", weights="random")
    cache.get(VariantId("tiny-llama", "maw", 0))
    assert collections == []  # nothing resident before the first build
    cache.get(VariantId("tiny-llama", "maw", 40))
    assert len(collections) == 1  # the previous variant dropped, base kept
    cache.get(VariantId("tiny-llama-instruct", "maw", 40))
    assert len(collections) == 2  # variant and base dropped together: one collection
    cache.get(VariantId("tiny-llama-instruct", "maw", 40))
    assert len(collections) == 2  # the current variant is reused
    cache.clear()
    cache.clear()
    assert len(collections) == 3


# ---------------------------------------------------------------- calibration identity


def _small(model: str) -> CalibrationSettings:
    return settings_for(model, n_sequences=4, seq_len=64, batch_size=2)


def test_data_methods_carry_the_calibration_tag_above_level_zero():
    got = select_variants(["tiny-llama"], ["flap", "maw"], [0, 40], calibration=_small)
    tag = _small("tiny-llama").tag
    assert [v.slug for v in got] == ["tiny-llama-flap-p0", f"tiny-llama-flap-p40-{tag}",
                                     "tiny-llama-maw-p40"]
    assert tag in got[1].slug and got[1].calibration == tag
    other = select_variants(["tiny-llama"], ["flap"], [40],
                            calibration=lambda m: settings_for(m, n_sequences=5, seq_len=64))
    assert other[0].slug != got[1].slug  # other data, another variant (ids, caches, baselines)


def test_instruct_models_calibrate_on_their_chat_template():
    (vid,) = select_variants(["tiny-llama-instruct"], ["act"], [40], calibration=_small)
    assert vid.calibration.endswith("-chat")


def test_data_variants_calibrate_once_per_base_and_prune_with_the_stats(monkeypatch):
    calls = []
    real = variants.calibrate

    def counting(model, tok, settings, **kw):
        calls.append(settings.tag)
        return real(model, tok, settings, progress=False)

    monkeypatch.setattr(variants, "calibrate", counting)
    cache = VariantCache(calibration=_small)
    vids = select_variants(["tiny-llama"], ["flap", "wanda_sp"], [0, 40], calibration=_small)
    built = {v.slug: cache.get(v).report for v in vids}
    assert calls == [_small("tiny-llama").tag]  # once for both data methods
    p0, flap, wanda = built.values()
    assert p0.method == "flap" and p0.intermediate_size_after == p0.intermediate_size_before
    assert not p0.compensated and p0.calibration is None
    assert flap.compensated and flap.calibration == _small("tiny-llama").tag
    assert not wanda.compensated and wanda.calibration == flap.calibration
    assert flap.intermediate_size_after == wanda.intermediate_size_after < p0.intermediate_size_before


def test_a_variant_selected_under_other_settings_is_refused():
    vid = select_variants(["tiny-llama"], ["flap"], [40], calibration=_small)[0]
    cache = VariantCache(calibration=lambda m: settings_for(m, n_sequences=3, seq_len=64))
    with pytest.raises(ValueError, match="selected with calibration 'c-tinycorpus-n4-l64-b2"):
        cache.get(vid)
