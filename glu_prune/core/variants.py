"""Variants: the (model, method, level, round_to, calibration) matrix, their slugs, and a
build cache.

A variant's slug (``llama-3.2-1b-maw-p40``, ``-r128`` when rounded, and the calibration
tag for a data-driven method, ``tiny-llama-flap-p40-c-tinycorpus-n128-l256-b8-s0``) is in
every test id, so ``-k 1b``, ``-k p40``, ``-k maw`` and ``-k tinycorpus`` select naturally.
"""

from __future__ import annotations

import copy
import gc
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from glu_prune.catalog.models import ModelSpec, get_model_spec
from glu_prune.core.calibration import LayerStats, calibrate
from glu_prune.core.calibration_data import (CalibrationSettings, calibration_batches,
                                              settings_for)
from glu_prune.core.importance import get_scorer, needs_calibration
from glu_prune.core.loading import (WeightsUnavailable, check_architecture, default_dtype,
                                    has_local_weights, load_model, load_tokenizer,
                                    local_weights_folder)
from glu_prune.core.placement import Placement, place
from glu_prune.core.prune import PruneReport
from glu_prune.core.shapes import ShapeInputs, build_shape
from glu_prune.core.stream_variants import build_streamed, stream_refusal

LOG = logging.getLogger(__name__)


def _level_slug(pct: float, round_to: int = 1) -> str:
    """``p{pct}`` plus ``-r{round_to}`` when rounding is on (``p40``, ``p12_5``, ``p40-r128``)."""
    level = f"{pct:g}".replace(".", "_")
    return f"p{level}" + (f"-r{round_to}" if round_to > 1 else "")


def variant_slug(model: str, method: str, pct: float, round_to: int = 1,
                 calibration: str = "", shape: str = "width", layers: int = 0) -> str:
    """``{model}-{method}-p{pct}`` plus ``-r{round_to}`` when rounding is on and the
    calibration tag when the variant was pruned from calibration data; other shapes say
    theirs: ``{model}-{method}-global-p{pct}``, ``{model}-depth-{method}-d{layers}``."""
    if shape == "depth":
        slug = f"{model}-depth-{method}-d{layers}"
    elif shape == "global":
        slug = f"{model}-{method}-global-{_level_slug(pct, round_to)}"
    else:
        slug = f"{model}-{method}-{_level_slug(pct, round_to)}"
    return f"{slug}-{calibration}" if calibration else slug


SHAPES = ("width", "depth", "global")  # what a variant cuts (VariantId.shape)

# The calibration settings of a model: what every data-driven variant of it calibrates on.
CalibrationFor = Callable[[str], CalibrationSettings]


@dataclass(frozen=True, order=True)
class VariantId:
    """Identity of one pruned variant (sortable: model, then method, level, rounding)."""

    model: str
    method: str
    pct: float
    round_to: int = 1
    # The calibration settings' tag for a data-driven method above level 0, else "": two
    # variants pruned from different data are different variants (ids, caches, baselines).
    calibration: str = ""
    # What is cut: "width" (the same neurons-per-layer everywhere), "global" (widths
    # allocated over all layers, the same total as width at pct), "depth" (``layers``
    # whole layers chosen by ``method``; pct 0). The default keeps every width slug,
    # cache key and baseline as it was before shapes existed.
    shape: str = "width"
    layers: int = 0  # decoder layers removed (depth only)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"variant shape {self.shape!r} is not one of {', '.join(SHAPES)}")
        if self.shape == "depth" and (self.layers < 1 or self.pct != 0 or self.round_to != 1):
            raise ValueError(f"a depth variant removes >= 1 layers at pct 0, round_to 1; got "
                             f"layers={self.layers}, pct={self.pct}, round_to={self.round_to}")
        if self.shape != "depth" and self.layers:
            raise ValueError(f"layers={self.layers} given for a {self.shape} variant; only "
                             f"depth variants remove layers")
        if self.shape == "global" and self.pct <= 0:
            raise ValueError(f"a global variant needs a level above 0, got pct={self.pct}")

    @property
    def level(self) -> str:
        """The pruning level and rounding, as in the slug: ``p40``, ``p40-r128``, ``d2``."""
        if self.shape == "depth":
            return f"d{self.layers}"
        return _level_slug(self.pct, self.round_to)

    @property
    def is_base(self) -> bool:
        """Whether this is the unpruned model (width level 0): no other shape ever is."""
        return self.shape == "width" and self.pct == 0

    @property
    def slug(self) -> str:
        return variant_slug(self.model, self.method, self.pct, self.round_to, self.calibration,
                            self.shape, self.layers)

    @property
    def base_slug(self) -> str:
        """Slug of the same model unpruned (the level every change is measured against)."""
        return variant_slug(self.model, self.method, 0)


def select_variants(models: Sequence[str], methods: Sequence[str],
                    levels: Sequence[float] | None = None,
                    round_tos: Sequence[int] = (1,),
                    calibration: CalibrationFor = settings_for) -> list[VariantId]:
    """The variant matrix in run order.

    ``levels=None`` takes each model's registered levels; otherwise the given levels that
    the model registers (a level no selected model has is an error). Level 0 is the same
    model for every method and rounding, so it appears once (first method, round_to 1).
    Data-driven methods' variants carry the tag of ``calibration(model)``. A model with
    methods of its own (``ModelSpec.methods``, from the models file) runs those instead.
    """
    specs = [get_model_spec(m) for m in models]
    for m in {*methods, *(m for s in specs for m in s.methods)}:
        get_scorer(m)
    if levels is not None:
        known = {lv for s in specs for lv in s.levels}
        unknown = [lv for lv in levels if lv not in known]
        if unknown:
            raise ValueError(f"levels {unknown} are not registered for models {list(models)}; "
                             f"registered levels: {sorted(known)}")
    out: list[VariantId] = []
    for spec in specs:
        chosen = spec.levels if levels is None else [lv for lv in spec.levels if lv in levels]
        for pct in sorted(chosen):
            for i, method in enumerate(spec.methods or methods):  # the models file's own
                for r in round_tos:
                    if pct == 0 and (i > 0 or r > 1):
                        continue
                    tag = (calibration(spec.name).tag
                           if pct > 0 and needs_calibration(method) else "")
                    out.append(VariantId(spec.name, method, pct, r, tag))
    return out


@dataclass
class BuiltVariant:
    """A pruned model ready for tests."""

    id: VariantId
    spec: ModelSpec
    model: Any
    tokenizer: Any
    report: PruneReport
    weights: str  # "pretrained" or "random"
    base_config: Any = None  # the unpruned model's config (same depth): what ideals compare

    @property
    def slug(self) -> str:
        return self.id.slug

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def method(self) -> str:
        return self.id.method

    @property
    def pct(self) -> float:
        return self.id.pct

    @property
    def round_to(self) -> int:
        return self.id.round_to


@dataclass
class VariantCache:
    """Builds variants; keeps at most one base model and one variant resident.

    ``weights``: ``"auto"`` (local dir / hub), ``"random"``, or ``"local"`` (pretrained when
    on disk, else random weights of the same shape: for speed, which weights do not change).
    ``calibration``: each model's calibration settings; the statistics are collected once
    per base model and settings, on the unpruned model, and kept while the base is.
    ``placement``: spread each variant over devices (accelerate's device map); the base is
    then loaded and pruned in CPU memory and each variant, level 0 included, is a placed
    copy, so the base stays whole for the next level.
    ``stream_dir``: build width variants of a model on disk by streaming into fresh folders
    under it, then load them (placed, with ``placement``): the unpruned model is never held
    whole (:mod:`glu_prune.core.stream_variants`); a run of fewer layers than the model has
    is built in memory (it is that small).
    """

    device: str | None = None
    dtype: Any = None
    weights: str = "auto"
    model_dir: str | None = None
    calibration: CalibrationFor = settings_for
    placement: Placement | None = None
    stream_dir: str | None = None
    builds: dict[str, int] = field(default_factory=dict)  # slug -> times built
    _stats: tuple[str, list[LayerStats]] | None = None  # (tag, stats) of the resident base
    _base: tuple[tuple[str, int | None], Any, Any, str] | None = None
    _current: tuple[tuple[VariantId, int | None], BuiltVariant] | None = None
    _unavailable: dict[str, str] = field(default_factory=dict)  # model -> why (once a run)

    def _weights_for(self, name: str) -> str:
        if self.weights != "local":
            return self.weights
        return "auto" if has_local_weights(name, self.model_dir) else "random"

    def _check_available(self, name: str) -> None:
        """Raise ``WeightsUnavailable`` at once when ``name``'s weights failed before.

        Availability is decided once per model per process: every later test of the model
        skips without a load attempt or a garbage collection (0.5 s each on a full heap).
        A new exception each time: re-raising one object would chain every test's frames.
        """
        if name in self._unavailable:
            raise WeightsUnavailable(self._unavailable[name])

    def _drop(self, base: bool) -> None:
        """Release the current variant (and the base when ``base``); collect only when
        something was resident, so freeing memory costs nothing when there is none."""
        resident = self._current is not None or (base and self._base is not None)
        self._current = None
        if base:
            self._base = None
            self._stats = None
        if resident:
            gc.collect()

    def _load_base(self, name: str, num_layers: int | None) -> tuple[Any, Any, str]:
        key = (name, num_layers)
        if self._base is not None and self._base[0] == key:
            return self._base[1:]
        self._drop(base=True)
        weights = self._weights_for(name)
        device, dtype = self.device, self.dtype
        if self.placement is not None:  # pruned on the CPU, then placed (bf16 for GPUs)
            on_cpu = self.placement.gpus == ()  # caps that name no GPU
            device, dtype = "cpu", dtype or default_dtype("cpu" if on_cpu else self.device)
        try:
            model, tok = load_model(name, weights=weights, dtype=dtype, device=device,
                                    num_layers=num_layers, model_dir=self.model_dir)
        except WeightsUnavailable as exc:
            self._unavailable[name] = str(exc)
            raise
        random = weights == "random" or get_model_spec(name).shape_only
        self._base = (key, model, tok, "random" if random else "pretrained")
        return self._base[1:]

    def get(self, vid: VariantId, num_layers: int | None = None) -> BuiltVariant:
        """The built variant ``vid`` (reused when it is the current one)."""
        key = (vid, num_layers)
        if self._current is not None and self._current[0] == key:
            return self._current[1]
        self._check_available(vid.model)
        folder = self._stream_source(vid, num_layers)
        if folder is not None:
            return self._built(key, vid, *self._streamed(vid, folder))
        same_base = self._base is not None and self._base[0] == (vid.model, num_layers)
        self._drop(base=not same_base)  # one collection frees both when the model changes
        base, tok, weights = self._load_base(vid.model, num_layers)
        # Level 0 is the base itself (pruning at 0 % changes nothing); others (every depth
        # variant too, though its pct is 0) prune a copy so the base stays intact, and so
        # does a placed level 0 (placing moves its weights off the base).
        placed = self.placement is not None
        model = base if vid.is_base and not placed else copy.deepcopy(base)
        report = self._prune(model, vid, base, tok)
        if placed:
            place(model, self.placement)
        return self._built(key, vid, model, tok, report, weights, base.config)

    def _built(self, key: tuple[VariantId, int | None], vid: VariantId, model: Any, tok: Any,
               report: PruneReport, weights: str, base_config: Any) -> BuiltVariant:
        """Count, log and keep the variant just built as the current one."""
        self.builds[vid.slug] = self.builds.get(vid.slug, 0) + 1
        LOG.info("built %s (intermediate %d, %s weights)", vid.slug,
                 report.intermediate_size_after, weights)
        built = BuiltVariant(vid, get_model_spec(vid.model), model, tok, report, weights,
                             base_config)
        self._current = (key, built)
        return built

    def _stream_source(self, vid: VariantId, num_layers: int | None) -> Any:
        """The model folder to stream ``vid`` from, or None to build it in memory (not
        streaming, no safetensors folder on disk, or a reduced-depth run); a shape that
        cannot stream is an error, never a silent in-memory build."""
        if self.stream_dir is None or self.weights == "random":
            return None
        folder = local_weights_folder(vid.model, self.model_dir)
        full = int(get_model_spec(vid.model).architecture.get("num_hidden_layers", 0))
        if folder is None or (num_layers is not None and num_layers < full):
            LOG.info("%s: built in memory (%s)", vid.slug, "a reduced-depth run" if folder
                     else "no safetensors folder on disk to stream from")
            return None
        refusal = stream_refusal(vid.shape)
        if refusal:
            raise ValueError(f"{vid.slug}: {refusal}")
        return folder

    def _streamed(self, vid: VariantId, folder: Any
                  ) -> tuple[Any, Any, PruneReport, str, Any]:
        """(model, tokenizer, report, weights, base config) of ``vid`` streamed from
        ``folder``."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(folder)
        check_architecture(config, get_model_spec(vid.model), source=str(folder))
        self._drop(base=True)  # nothing of an in-memory build stays beside it
        tok = load_tokenizer(vid.model, model_dir=self.model_dir)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        batches = (self._batches_for(vid, tok)
                   if vid.pct > 0 and needs_calibration(vid.method) else None)
        model, report = build_streamed(
            folder, self.stream_dir, slug=vid.slug, method=vid.method, pct=vid.pct,
            round_to=vid.round_to, batches=batches, calibration=vid.calibration or None,
            dtype=self.dtype or default_dtype(device), device=device,
            placement=self.placement)
        return model, tok, report, "pretrained", config

    def _stats_for(self, vid: VariantId, base: Any, tok: Any) -> list[LayerStats]:
        """The resident base's calibration statistics under ``vid``'s settings."""
        settings = self._settings_of(vid)
        if self._stats is None or self._stats[0] != settings.tag:
            self._stats = (settings.tag, calibrate(base, tok, settings))
        return self._stats[1]

    def _batches_for(self, vid: VariantId, tok: Any) -> list[Any]:
        """The calibration token batches of ``vid``'s settings (depth scoring)."""
        settings = self._settings_of(vid)
        return calibration_batches(settings, tok)

    def _settings_of(self, vid: VariantId) -> CalibrationSettings:
        settings = self.calibration(vid.model)
        if settings.tag != vid.calibration:
            raise ValueError(f"{vid.slug}: the variant was selected with calibration "
                             f"{vid.calibration!r} but this run calibrates {vid.model} with "
                             f"{settings.tag!r}")
        return settings

    def _prune(self, model: Any, vid: VariantId, base: Any, tok: Any) -> PruneReport:
        inputs = ShapeInputs(stats=lambda: self._stats_for(vid, base, tok),
                             batches=lambda: self._batches_for(vid, tok))
        return build_shape(model, vid, inputs)

    def clear(self) -> None:
        """Drop every resident model."""
        self._drop(base=True)
