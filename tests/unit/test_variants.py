"""Unit tests of the variant matrix and slugs."""

from __future__ import annotations

import pytest

from glu_prune.variants import VariantId, parse_list, select_variants, variant_slug


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
