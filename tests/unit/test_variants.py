"""Unit tests of the variant matrix and slugs."""

from __future__ import annotations

import gc

import pytest

from glu_prune.core import variants
from glu_prune.core.loading import WeightsUnavailable
from glu_prune.core.variants import (VariantCache, VariantId, parse_list, select_variants,
                                     variant_slug)


def test_slug():
    assert variant_slug("llama-3.2-1b", "maw", 40) == "llama-3.2-1b-maw-p40"
    assert variant_slug("llama-3.2-1b", "maw", 40, 128) == "llama-3.2-1b-maw-p40-r128"
    assert variant_slug("tiny-llama", "vow", 12.5) == "tiny-llama-vow-p12_5"


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
    with pytest.raises(KeyError, match="unknown model 'llama-9b'; known models"):
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
