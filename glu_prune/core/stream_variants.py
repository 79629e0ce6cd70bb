"""Suite variants of a model folder built by streaming, for models bigger than memory.

A pruned variant is written folder to folder one layer at a time
(:func:`glu_prune.core.streaming.stream_prune`) into a fresh folder under the work folder,
then loaded from there by transformers itself, spread over devices by accelerate's device
map when a :class:`~glu_prune.core.placement.Placement` is given (``from_pretrained`` with
``device_map`` / ``max_memory`` / ``offload_folder``: the engine lm-eval's
``parallelize=True`` uses). The unpruned model is never loaded whole to be copied: level 0
loads the source folder the same way. Each written folder is removed with its model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoConfig

from glu_prune.core.placement import Placement
from glu_prune.core.prune import PruneReport
from glu_prune.core.shards import read_source
from glu_prune.core.streaming import folder_report, stream_prune

LOG = logging.getLogger(__name__)


def stream_refusal(shape: str) -> str:
    """Why a variant of ``shape`` cannot be built by streaming ("" when it can): streaming
    cuts the same width from every layer."""
    if shape != "width":
        return (f"a {shape} variant cannot be built by streaming (it cuts uniform widths "
                f"only); run {shape} variants without --glu-stream")
    return ""


def layer_shard_size(source: Path) -> int:
    """Shard size of a streamed variant: about one decoder layer's bytes (at least 1 MiB).

    Loading maps one shard at a time, so shards of a layer keep the load within the
    one-layer bound; the folder is the suite's own and temporary, so their number does
    not matter (save_pretrained's 5 GB would map more than a layer of any model up to 8B).
    """
    config = AutoConfig.from_pretrained(source)
    total = sum(e.nbytes for e in read_source(source).entries.values())
    return max(total // max(1, config.num_hidden_layers), 1 << 20)


def _fresh_folder(parent: str | Path, prefix: str) -> Path:
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def load_folder(folder: Path, *, dtype: Any, device: str, placement: Placement | None
                ) -> Any:
    """The model in ``folder``, on ``device``, or placed by accelerate as ``placement`` says
    (disk-offloaded weights go to a fresh folder under its offload folder, removed with the
    model: accelerate reuses a folder that already holds an index)."""
    from transformers import AutoModelForCausalLM

    if placement is None:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    offload = (None if placement.offload_folder is None else
               _fresh_folder(placement.offload_folder, "offload-"))
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, device_map=placement.strategy, max_memory=placement.memory,
        offload_folder=None if offload is None else str(offload))
    if offload is not None:
        weakref.finalize(model, shutil.rmtree, str(offload), True)
    return model.eval()


def build_streamed(source: Path, work_dir: str | Path, *, slug: str, method: str,
                   pct: float, round_to: int, batches: Sequence[torch.Tensor] | None,
                   calibration: str | None, dtype: Any, device: str,
                   placement: Placement | None) -> tuple[Any, PruneReport]:
    """``(model, report)`` of the width variant ``pct`` / ``method`` / ``round_to`` of the
    model folder ``source``: level 0 loads ``source`` itself; others are streamed into a
    fresh folder under ``work_dir`` (removed with the model), then loaded. ``batches``:
    the calibration batches of a data-driven method (``calibration``: their tag)."""
    if pct == 0:
        report = folder_report(source, method, round_to)
        LOG.info("loaded %s from %s (level 0: nothing to stream)", slug, source)
        return load_folder(source, dtype=dtype, device=device, placement=placement), report
    out = _fresh_folder(work_dir, f"{slug}-")
    try:
        report = stream_prune(source, out, pct=pct, method=method, round_to=round_to,
                              batches=batches, calibration_tag=calibration, device=device,
                              max_shard_size=layer_shard_size(source))
        model = load_folder(out, dtype=dtype, device=device, placement=placement)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, str(out), True)
    LOG.info("streamed %s from %s into %s", slug, source, out)
    return model, report
