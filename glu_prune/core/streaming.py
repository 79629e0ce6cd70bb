"""Folder-to-folder width pruning that never holds the model: one layer's MLP at a time.

The output is planned from the source's shard headers alone (pruning keeps the same ``k``
neurons in every layer, so every output shape is known before a weight is read). Then each
output shard is written in order: a tensor that does not change is copied file to file in
chunks; a layer's MLP is read (gate, up, down), scored with the same scorers as in-memory
pruning (:mod:`glu_prune.core.importance`), and only its kept rows and columns are written.
Peak memory is one layer's MLP plus a copy buffer, whatever the model's size.

Calibration methods first run the model layer by layer on the calibration batches
(:mod:`glu_prune.core.layerwise`): each layer is read, run, scored and its kept neurons (and,
for ``flap``, its compensation bias) remembered before the next is read; then the shards are
written as for weight-only methods, each MLP read a second time to be sliced. Peak memory is
then one decoder layer plus the calibration hidden states (sequences x length x hidden).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import IO

import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoConfig

from glu_prune.catalog.families import Family, family_of
from glu_prune.core.arithmetic import kept_count, pct_of
from glu_prune.core.compensate import check_bias_expressible, compensation_bias
from glu_prune.core.importance import (BIAS_COMPENSATED, CALIBRATED_SCORERS, SCORERS,
                                       needs_calibration, score)
from glu_prune.core.layerwise import layerwise_stats
from glu_prune.core.loading import default_dtype
from glu_prune.core.mlps import down_linear
from glu_prune.core.prune import PruneReport, select_kept
from glu_prune.core.shards import (DTYPES, INDEX_FILE, Source, copy_bytes, header_bytes,
                                   parse_size, plan_shards, read_source, read_tensor,
                                   shard_names, write_tensor)

LOG = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = "5GB"  # transformers' save_pretrained default


def _as_mlp(weights: dict[str, torch.Tensor]) -> nn.Module:
    """A split-layout GLU MLP around read tensors (no copy), for the in-memory scorers."""
    mlp = nn.Module()
    for role, w in weights.items():
        linear = nn.Linear(1, 1, bias=False, device="meta")  # shapes set below, no allocation
        linear.weight = nn.Parameter(w, requires_grad=False)
        linear.out_features, linear.in_features = w.shape
        setattr(mlp, role, linear)
    return mlp


@dataclass(frozen=True)
class Role:
    """What one MLP tensor is: the MLP attribute it belongs to, the dim along which its
    neurons lie, whether it holds [gate; up] rows (fused), whether it is a weight."""

    attr: str
    dim: int
    fused: bool = False
    weight: bool = True


def mlp_tensor_names(fam: Family, layer: int) -> dict[str, Role]:
    """Checkpoint tensor name -> role, for decoder layer ``layer``'s MLP in ``fam``'s layout:
    the one place that knows how a checkpoint names a GLU MLP's tensors."""
    prefix = f"{fam.layers}.{layer}.{fam.mlp}."
    rows = [(fam.gate_up, True)] if fam.fused else [(fam.gate, False), (fam.up, False)]
    out = {}
    for attr, fused in rows:
        out[f"{prefix}{attr}.weight"] = Role(attr, 0, fused)
        out[f"{prefix}{attr}.bias"] = Role(attr, 0, fused, weight=False)
    out[f"{prefix}{fam.down}.weight"] = Role(fam.down, 1)
    return out


def _down_bias(fam: Family, layer: int) -> str:
    return f"{fam.layers}.{layer}.{fam.mlp}.{fam.down}.bias"  # hidden-sized: copied as is


@dataclass
class _Plan:
    """What is written: each sliced tensor's layer and dim, every output shape, the shards."""

    sliced: dict[str, tuple[int, int]]  # name -> (layer, neuron dim)
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]  # safetensors dtype names
    shards: list[list[str]]

    def nbytes(self, name: str) -> int:
        return DTYPES[self.dtypes[name]].itemsize * _numel(self.shapes[name])


_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def _plan(src: Source, fam: Family, layers: int, n: int, k: int, max_bytes: int,
          extra: dict[str, torch.Tensor]) -> _Plan:
    """Output layout from the source headers (plus ``extra``, tensors computed beforehand:
    flap's biases); an MLP of another width is an error."""
    sliced: dict[str, tuple[int, int]] = {}
    for layer in range(layers):
        for name, role in mlp_tensor_names(fam, layer).items():
            if name not in src.entries:
                if role.weight:
                    raise ValueError(f"tensor {name} is not in the source's shards, where "
                                     f"the {fam.name} family keeps it")
                continue
            want = 2 * n if role.fused else n
            if src.entries[name].shape[role.dim] != want:
                raise ValueError(f"{name} has shape {src.entries[name].shape}, not {want} "
                                 f"along dim {role.dim} (width {n})")
            sliced[name] = (layer, role.dim)
    shapes, dtypes = {}, {}
    for name, e in src.entries.items():
        shape = list(e.shape)
        if name in sliced:
            shape[sliced[name][1]] = shape[sliced[name][1]] // n * k  # fused: 2n -> 2k
        shapes[name], dtypes[name] = tuple(shape), e.dtype
    for name, t in extra.items():
        shapes[name], dtypes[name] = tuple(t.shape), _DTYPE_NAMES[t.dtype]
    plan = _Plan(sliced, shapes, dtypes, [])
    plan.shards = plan_shards([(nm, plan.nbytes(nm)) for nm in sorted(shapes)], max_bytes)
    return plan


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


class _LayerSlicer:
    """Kept indices per layer, and a layer's sliced tensors until each is written."""

    def __init__(self, src: Source, fam: Family, n: int, k: int, method: str,
                 seed: int, kept: dict[int, torch.Tensor] | None = None,
                 extra: dict[str, torch.Tensor] | None = None) -> None:
        self.src, self.fam, self.n, self.k = src, fam, n, k
        self.method, self.seed = method, seed
        self.kept: dict[int, torch.Tensor] = dict(kept or {})  # chosen beforehand: kept as is
        self.extra = dict(extra or {})  # whole output tensors computed beforehand
        self.pending: dict[str, torch.Tensor] = {}
        # Every layer's MLP has the same shapes, and a layer's slices are written before
        # the next layer is read (its tensors are contiguous in the sorted shard order), so
        # one set of buffers serves every layer: no fresh pages to fault in and zero per
        # layer (about a third of the time above reading and writing, measured).
        self._buffers: dict[tuple, torch.Tensor] = {}

    def _buffer(self, key: tuple, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """The reused buffer ``key`` of ``shape`` and ``dtype`` (made anew when they change)."""
        buf = self._buffers.get(key)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype:
            buf = self._buffers[key] = torch.empty(tuple(shape), dtype=dtype)
        return buf

    def take(self, name: str, layer: int) -> torch.Tensor:
        """The sliced tensor ``name``; the first of a layer's tensors scores the layer
        (unless its kept neurons were chosen beforehand)."""
        if name in self.extra:
            return self.extra.pop(name)
        if name not in self.pending:
            self._slice_layer(layer)
        return self.pending.pop(name)

    def _slice_layer(self, layer: int) -> None:
        roles = {name: role for name, role in mlp_tensor_names(self.fam, layer).items()
                 if name in self.src.entries}
        if self.pending:  # a slice not yet written would be overwritten: never write it wrong
            raise RuntimeError(f"layer {layer} read before {sorted(self.pending)} were written")
        entries = {name: self.src.entries[name] for name in roles}
        full = {name: read_tensor(e, self._buffer(("read", _suffix(name)), (e.nbytes,),
                                                  torch.uint8))
                for name, e in entries.items()}
        if layer not in self.kept:
            mlp = _as_mlp({r.attr: full[name] for name, r in roles.items() if r.weight})
            scores = score(mlp, self.method, layer=layer, seed=self.seed)
            self.kept[layer] = select_kept(scores, self.k, name=f"layer {layer}, {self.method}")
        idx = self.kept[layer]
        fused_idx = torch.cat([idx, idx + self.n])  # rows [0, n) gate, [n, 2n) up
        for name, role in roles.items():
            index = fused_idx if role.fused else idx
            shape = list(full[name].shape)
            shape[role.dim] = len(index)
            out = self._buffer(("slice", _suffix(name)), shape, full[name].dtype)
            self.pending[name] = torch.index_select(full[name], role.dim, index, out=out)


def _suffix(name: str) -> str:
    """A layer tensor's name after its layer index (``mlp.gate_proj.weight``): its buffer's
    key, the same in every layer."""
    found = re.search(r"\.\d+\.(.+)$", name)
    return found.group(1) if found else name


def _write_shard(path: Path, names: list[str], plan: _Plan, src: Source,
                 slicer: _LayerSlicer, bar: tqdm) -> None:
    entries = [(n, plan.dtypes[n], plan.shapes[n], plan.nbytes(n)) for n in names]
    with open(path, "wb") as out:
        out.write(header_bytes(entries, src.metadata))
        for name in names:
            _write_one(name, plan, src, slicer, out)
            bar.update(1)


def _write_one(name: str, plan: _Plan, src: Source, slicer: _LayerSlicer,
               out: IO[bytes]) -> None:
    if name in slicer.extra or name in plan.sliced:
        write_tensor(slicer.take(name, plan.sliced.get(name, (-1, 0))[0]), out)
    else:
        copy_bytes(src.entries[name], out)


def _copy_side_files(src_dir: Path, out_dir: Path) -> None:
    """Tokenizer, generation config and the like: every file that is not weights or config."""
    for path in src_dir.iterdir():
        if path.is_file() and path.suffix != ".safetensors" and path.name not in (
                INDEX_FILE, "config.json", "prune_report.json") and not path.name.startswith("."):
            shutil.copy2(path, out_dir / path.name)


def _check_method(method: str, batches: Sequence[torch.Tensor] | None, config) -> None:
    """Calibration methods need ``batches``, weight-only ones refuse them; flap needs a
    family whose config can express the compensation bias."""
    if needs_calibration(method) and batches is None:
        raise ValueError(f"importance method {method!r} is calibration-based: pass batches= "
                         f"(token batches, e.g. glu_prune.core.calibration_data."
                         f"calibration_batches) or stream with a weight-only method "
                         f"({', '.join(sorted(SCORERS))})")
    if not needs_calibration(method) and batches is not None:
        raise ValueError(f"importance method {method!r} is weight-only and does not use "
                         f"calibration data, but batches were given; drop batches= or use a "
                         f"calibration-based method: {', '.join(sorted(CALIBRATED_SCORERS))}")
    if method in BIAS_COMPENSATED:
        check_bias_expressible(config)


def _compensation(fam: Family, layer: int, mlp: nn.Module, idx: torch.Tensor, mean_h,
                  src: Source, k: int) -> dict[str, torch.Tensor]:
    """flap's tensors of one layer, in the source's dtype: ``down``'s bias standing in for
    the removed neurons, and zero ``gate``/``up`` biases where the source has none (the
    config's ``mlp_bias`` gives all three a bias, as in-memory compensation does)."""
    down = down_linear(mlp)
    out = {}
    for name, role in mlp_tensor_names(fam, layer).items():
        dtype = DTYPES[src.entries[name.rsplit(".", 1)[0] + ".weight"].dtype]
        if role.attr == fam.down:  # the weight read back in the source's dtype: exact
            bias = None if down.bias is None else down.bias.detach().to(dtype)
            out[_down_bias(fam, layer)] = compensation_bias(
                down.weight.detach().to(dtype), idx, mean_h, bias).cpu()
        elif not role.weight and name not in src.entries:
            out[name] = torch.zeros(2 * k if role.fused else k, dtype=dtype)
    return out


def _calibrated(src: Source, config, fam: Family, n: int, k: int, method: str,
                batches: Sequence[torch.Tensor], device: str | None,
                ) -> tuple[dict[int, torch.Tensor], dict[str, torch.Tensor]]:
    """Kept neurons per layer (and flap's biases) from a layer-by-layer calibration run."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # one block for every layer's choice, allocated before any layer: small results
    # allocated between layers would pin the heap above each freed layer (fragmentation)
    chosen = torch.empty(config.num_hidden_layers, k, dtype=torch.long)
    extra = {}
    compensate = method in BIAS_COMPENSATED and k < n  # nothing removed: no bias
    for i, layer, stats in layerwise_stats(src, config, batches, dtype=default_dtype(device),
                                           device=device,
                                           progress=LOG.isEnabledFor(logging.INFO)):
        mlp = getattr(layer, fam.mlp)
        chosen[i] = select_kept(score(mlp, method, layer=i, stats=stats), k,
                                name=f"layer {i} ({fam.layers}.{i}.{fam.mlp}), {method}")
        if compensate:
            extra.update(_compensation(fam, i, mlp, chosen[i], stats.mean, src, k))
    return dict(enumerate(chosen)), extra


def stream_prune(src_dir: str | Path, out_dir: str | Path, *, pct: float | None = None,
                 expansion_ratio: float | None = None, method: str = "maw", round_to: int = 1,
                 seed: int = 0, max_shard_size: str | int = DEFAULT_SHARD_SIZE,
                 batches: Sequence[torch.Tensor] | None = None,
                 calibration_tag: str | None = None, device: str | None = None) -> PruneReport:
    """Prune the safetensors model in ``src_dir`` into the existing empty folder ``out_dir``.

    Same kept neurons, tensors and config as :func:`glu_prune.core.prune.prune_glu_mlp` on
    the loaded model (in the source's dtype), written as shards of at most
    ``max_shard_size``. Calibration methods take token ``batches`` (``calibration_tag``: their
    settings' tag, for the report) and run layer by layer on ``device`` (default: CUDA when
    there is one) in the dtype in-memory loading would use there. Atomicity is the caller's:
    write into a hidden folder, then rename.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    config = AutoConfig.from_pretrained(src_dir)
    _check_method(method, batches, config)
    fam = family_of(config)
    n, hidden = fam.width(config), config.hidden_size
    k = kept_count(n, pct=pct, expansion_ratio=expansion_ratio, hidden_size=hidden,
                   round_to=round_to)
    src = read_source(src_dir)  # every shard present and whole before anything is written
    max_bytes = parse_size(max_shard_size)
    kept, extra = {}, {}
    if batches is not None:
        _plan(src, fam, config.num_hidden_layers, n, k, max_bytes, {})  # fails before the run
        kept, extra = _calibrated(src, config, fam, n, k, method, batches, device)
    plan = _plan(src, fam, config.num_hidden_layers, n, k, max_bytes, extra)
    slicer = _LayerSlicer(src, fam, n, k, method, seed, kept, extra)
    files = shard_names(len(plan.shards))
    with tqdm(total=len(plan.shapes), desc="streaming prune", unit="tensor",
              disable=not LOG.isEnabledFor(logging.INFO)) as bar:
        for fname, names in zip(files, plan.shards):
            _write_shard(out_dir / fname, names, plan, src, slicer, bar)
    if len(files) > 1:
        _write_index(out_dir, plan, files)
    setattr(config, fam.width_field, k)
    if extra:
        config.mlp_bias = True  # flap: the biases load with the model
    config.save_pretrained(out_dir)
    _copy_side_files(src_dir, out_dir)
    report = _report(src, plan, fam, config, n, k, method, round_to, seed, slicer)
    report.compensated, report.calibration = bool(extra), calibration_tag
    return report


def _write_index(out_dir: Path, plan: _Plan, files: list[str]) -> None:
    weight_map = {name: f for f, names in zip(files, plan.shards) for name in names}
    total = sum(plan.nbytes(n) for n in weight_map)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _mlp_names(fam: Family, layers: int) -> set[str]:
    """Every MLP tensor name of a model of ``layers`` layers (down's bias included)."""
    return {nm for layer in range(layers) for nm in mlp_tensor_names(fam, layer)} | {
        _down_bias(fam, i) for i in range(layers)}


def folder_report(src_dir: str | Path, method: str, round_to: int = 1) -> PruneReport:
    """The report of level 0 of the model in ``src_dir`` (nothing removed), counted from
    its shards' headers as a streamed variant's report is (no weight read)."""
    config = AutoConfig.from_pretrained(src_dir)
    fam = family_of(config)
    n, names = fam.width(config), _mlp_names(fam, config.num_hidden_layers)
    sizes = {name: _numel(e.shape) for name, e in read_source(Path(src_dir)).entries.items()}
    total, mlp = sum(sizes.values()), sum(v for nm, v in sizes.items() if nm in names)
    return PruneReport(method=method, pct=0.0, intermediate_size_before=n,
                       intermediate_size_after=n, hidden_size=config.hidden_size,
                       total_params_before=total, total_params_after=total,
                       mlp_params_before=mlp, mlp_params_after=mlp, round_to=round_to)


def _report(src: Source, plan: _Plan, fam: Family, config, n: int, k: int, method: str,
            round_to: int, seed: int, slicer: _LayerSlicer) -> PruneReport:
    """The same report as in-memory pruning, counted from the shapes."""
    mlp_names = _mlp_names(fam, config.num_hidden_layers)
    before = {name: _numel(e.shape) for name, e in src.entries.items()}
    after = {name: _numel(shape) for name, shape in plan.shapes.items()}
    mlp_b = sum(v for nm, v in before.items() if nm in mlp_names)
    mlp_a = sum(v for nm, v in after.items() if nm in mlp_names)
    return PruneReport(method=method, pct=pct_of(n, k), intermediate_size_before=n,
                       intermediate_size_after=k, hidden_size=config.hidden_size,
                       total_params_before=sum(before.values()),
                       total_params_after=sum(after.values()), mlp_params_before=mlp_b,
                       mlp_params_after=mlp_a, round_to=round_to, seed=seed,
                       kept_indices=[slicer.kept[i].tolist() for i in sorted(slicer.kept)])
