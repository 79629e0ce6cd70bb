"""Pruning shapes in the suite: variant identity per shape (slugs, cache keys, baselines,
records), the shape builders, and equal-parameter matching from the config."""

from __future__ import annotations

import copy

import pytest
import torch
from glu_families import family_model

from glu_prune.catalog.benchmarks import get_benchmark
from glu_prune.catalog.models import make_config
from glu_prune.core.arithmetic import config_param_count
from glu_prune.core.depth import remove_layers
from glu_prune.core.matching import (closest_depth, depth_param_count, layer_param_counts,
                                     shape_variants, width_param_count)
from glu_prune.core.prune import count_params, prune_glu_mlp
from glu_prune.core.shapes import DepthReport, report_extra
from glu_prune.core.variants import SHAPES, VariantCache, VariantId
from glu_prune.evaluation import BenchResult, MetricValue, ResultCache, cache_key
from glu_prune.judging import QualityBaselines
from glu_prune.judging.verdict import Check, Subject
from glu_prune.results.analysis import benchmark_changes, level_zero_records
from glu_prune.results.record import SHAPES as RECORD_SHAPES
from glu_prune.results.record import Record

TAG = "c-tinycorpus-n128-l256-b8-s0"
WIDTH = VariantId("tiny-llama", "maw", 40)
GLOBAL = VariantId("tiny-llama", "maw", 40, shape="global")
DEPTH = VariantId("tiny-llama", "last", 0, shape="depth", layers=1)
BASE = VariantId("tiny-llama", "maw", 0)


# ---------------------------------------------------------------- identity


def test_width_slugs_are_unchanged_and_other_shapes_say_theirs():
    assert WIDTH.slug == "tiny-llama-maw-p40" and WIDTH.shape == "width"
    assert VariantId("tiny-llama", "flap", 40, 128, TAG).slug == f"tiny-llama-flap-p40-r128-{TAG}"
    assert GLOBAL.slug == "tiny-llama-maw-global-p40"
    assert DEPTH.slug == "tiny-llama-depth-last-d1" and DEPTH.level == "d1"
    bi = VariantId("tiny-llama", "bi", 0, calibration=TAG, shape="depth", layers=2)
    assert bi.slug == f"tiny-llama-depth-bi-d2-{TAG}"
    assert BASE.is_base and not DEPTH.is_base and not GLOBAL.is_base
    assert len({WIDTH, GLOBAL, DEPTH, BASE}) == 4  # equality includes the shape
    assert SHAPES == RECORD_SHAPES


@pytest.mark.parametrize("kwargs,message", [
    ({"shape": "diagonal"}, "shape 'diagonal' is not one of width, depth, global"),
    ({"shape": "depth"}, "a depth variant removes >= 1 layers"),
    ({"shape": "depth", "layers": 1, "pct": 40}, "at pct 0"),
    ({"layers": 2}, "only depth variants remove layers"),
    ({"shape": "global", "pct": 0}, "a global variant needs a level above 0"),
])
def test_bad_variant_ids(kwargs, message):
    given = {"model": "tiny-llama", "method": "maw", "pct": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        VariantId(**given)


def _result(slug: str) -> BenchResult:
    return BenchResult(slug, "wikitext", "wikitext_twin",
                       {"word_perplexity,none": MetricValue(5.0, None, 10)}, {"x": 1})


def test_a_cache_entry_serves_only_its_own_shape(tmp_path):
    """A global (or depth) variant never reads a width variant's cached result, even with the
    same settings record: the key and the folder are the slug's."""
    cache = ResultCache(tmp_path)
    settings = {"model": "same-identity", "task": "same"}
    cache.put(_result(WIDTH.slug), cache_key(WIDTH.slug, "wikitext", settings))
    for other in (GLOBAL, DEPTH, BASE):
        key = cache_key(other.slug, "wikitext", settings)
        assert key != cache_key(WIDTH.slug, "wikitext", settings)
        assert cache.get(other.slug, "wikitext", key) is None
    assert cache.get(WIDTH.slug, "wikitext", cache_key(WIDTH.slug, "wikitext", settings))


def test_a_width_baseline_never_judges_another_shape(tmp_path):
    """Baselines pinned for level 0 and width p40 judge neither global p40 nor a depth
    variant (whose pct is 0, like level 0's): those have no baseline, never a pass."""
    bench = get_benchmark("tiny-llama", "wikitext")
    store = QualityBaselines.load(tmp_path, "tiny-llama", required=False)
    checks = [Check(Subject("tiny-llama", v.slug, "wikitext", "word_perplexity,none"),
                    MetricValue(5.0, None, 10), "perplexity", "lower") for v in (BASE, WIDTH)]
    store.pin(checks, {"task": bench.task, "num_fewshot": 0, "limit": None,
                       "chat_template": False})
    assert store.entry_for(BASE, "wikitext") and store.entry_for(WIDTH, "wikitext")
    assert store.entry_for(GLOBAL, "wikitext") is None
    assert store.entry_for(DEPTH, "wikitext") is None
    subject = Subject("tiny-llama", DEPTH.slug, "wikitext", "word_perplexity,none")
    assert store.get(subject) is None


def test_records_carry_the_shape_and_depth_is_never_level_zero():
    width, depth = (Record.of(v, "wikitext", "word_perplexity,none", value, kind="perplexity",
                              direction="lower") for v, value in ((BASE, 5.0), (DEPTH, 9.0)))
    assert (depth.shape, depth.pct, depth.extra["layers_removed"]) == ("depth", None, 1)
    assert width.shape == "width" and width.identity != depth.identity
    assert Record.from_dict(depth.to_dict()) == depth
    refs = level_zero_records([width, depth])
    assert list(refs.values()) == [width]
    with pytest.raises(ValueError, match="record shape must be one of"):
        Record.from_dict({**depth.to_dict(), "shape": "diagonal"})
    # depth is a change measured against level 0 (perplexity 5 -> 9), never a reference
    changes = benchmark_changes([width, depth], key=lambda r: r.variant)
    assert changes == {DEPTH.slug: {"wikitext": pytest.approx(5 / 9 - 1)}}


# ---------------------------------------------------------------- building


def test_depth_variant_is_built_from_a_copy_and_reports_its_layers():
    """A depth variant has pct 0 but is not the base: building it leaves the base whole,
    so level 0 built next is still the unpruned model."""
    cache = VariantCache(device="cpu", dtype=torch.float32)
    built = cache.get(VariantId("tiny-llama", "last", 0, shape="depth", layers=2))
    report = built.report
    assert isinstance(report, DepthReport) and report.removed_layers == [2, 3]
    assert (report.layers_before, report.layers_after) == (4, 2)
    assert built.model.config.num_hidden_layers == 2
    config = make_config("tiny-llama")
    assert report.total_params_after == depth_param_count(config, 2) == count_params(built.model)
    assert report_extra(report) == {"removed_layers": [2, 3], "layers_before": 4,
                                    "layers_after": 2}
    base = cache.get(BASE)
    assert base.model.config.num_hidden_layers == 4 and len(base.model.model.layers) == 4


def test_global_variant_keeps_the_width_level_s_parameters_in_other_widths():
    cache = VariantCache(device="cpu", dtype=torch.float32)
    width = cache.get(WIDTH).report
    built = cache.get(GLOBAL)
    widths = built.report.layer_widths
    assert widths is not None and len(set(widths)) > 1  # the allocation differs per layer
    assert sum(widths) == 4 * width.intermediate_size_after
    assert built.report.total_params_after == width.total_params_after == \
        count_params(built.model) == width_param_count(make_config("tiny-llama"), 40)
    assert report_extra(built.report) == {"layer_widths": widths}
    assert cache.get(BASE).model.config.intermediate_size == 512  # the base stayed whole


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize("family,extra", [
    ("llama", {}), ("phi3", {}), ("qwen3", {"tie_word_embeddings": True}),
    ("gemma3_text", {"layer_types": ["sliding_attention", "full_attention"] * 2})])
def test_depth_and_width_counts_from_the_config_equal_the_surgery(family, extra):
    """Family-aware counts: removing n layers, or pruning width, of a real model of the
    family leaves exactly the parameters the config-only arithmetic says."""
    model = family_model(family, num_hidden_layers=4, **extra)
    config = model.config
    for n in (1, 3):
        pruned = copy.deepcopy(model)
        remove_layers(pruned, list(range(n)))
        assert count_params(pruned) == depth_param_count(config, n), (family, n)
    width = copy.deepcopy(model)
    report = prune_glu_mlp(width, pct=40)
    assert report.total_params_after == width_param_count(config, 40)


def test_closest_depth_is_the_nearest_count():
    """Brute force over every depth, independently of closest_depth's search."""
    for name in ("tiny-llama", "llama-3.2-1b", "llama-3.2-3b"):
        config = make_config(name)
        total, layer = config_param_count(config), layer_param_counts(config)[0]
        for pct in (10, 20, 30, 40, 50, 60):
            target = width_param_count(config, pct)
            gaps = {n: abs(total - n * layer - target) for n in range(1, config.num_hidden_layers)}
            best = min(gaps.values())
            assert closest_depth(config, pct) == min(n for n, g in gaps.items() if g == best)
    # the study's 1B at 40 % of neurons removed: 913.8 M parameters; 5 layers fewer: 931.7 M
    assert closest_depth(make_config("llama-3.2-1b"), 40) == 5


def test_shape_variants_match_each_width_level():
    width = [BASE, VariantId("tiny-llama", "maw", 10), WIDTH,
             VariantId("tiny-llama", "maw", 60)]
    got = shape_variants(width, ["depth", "global"], ["bi", "last"], lambda m: _Settings())
    slugs = [v.slug for v in got]
    # 10 % and 40 % of neurons are closest to one layer fewer, 60 % to two (tiny: 4 layers)
    assert slugs == ["tiny-llama-maw-p0", "tiny-llama-maw-global-p10",
                     f"tiny-llama-depth-bi-d1-{TAG}", "tiny-llama-depth-last-d1",
                     "tiny-llama-maw-global-p40", "tiny-llama-maw-global-p60",
                     f"tiny-llama-depth-bi-d2-{TAG}", "tiny-llama-depth-last-d2"]
    with_width = shape_variants(width, ["width", "global"], ["bi"], lambda m: _Settings())
    assert [v for v in with_width if v.shape == "width"] == width
    with pytest.raises(ValueError, match="shape 'cube' is not one of"):
        shape_variants(width, ["cube"], ["bi"], lambda m: _Settings())
    with pytest.raises(KeyError, match="unknown layer selection method 'middle'"):
        shape_variants(width, ["depth"], ["middle"], lambda m: _Settings())


class _Settings:
    tag = TAG
