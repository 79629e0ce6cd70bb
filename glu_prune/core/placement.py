"""Where a model too big for one device runs: one ``Placement`` (an accelerate device-map
strategy, per-device memory caps, a disk offload folder) applied by accelerate itself.

The suite hands lm-eval and the timers an already-built (pruned) model object, which
lm-eval's ``parallelize=True`` refuses (it places only what it loads). So the variant is
placed here with the engine ``parallelize=True`` runs through ``from_pretrained``:
accelerate's ``get_balanced_memory`` / ``infer_auto_device_map`` for the map and
``dispatch_model`` for the hooks that move activations between GPUs, CPU and disk.
Evaluation, latency and energy then all run the same placement.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

# transformers' device_map strategy names (what from_pretrained and lm-eval accept)
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
MEMORY_FORM = "device=size pairs such as 0=70GiB,1=70GiB,cpu=200GiB (GPU index or cpu)"


class PlacementError(ValueError):
    """A placement that cannot be applied; the message names the value and the fix."""


def _size_bytes(size: str) -> int:
    """accelerate's own reading of a size (``70GiB``, ``500MB``, plain bytes)."""
    from accelerate.utils import convert_file_size_to_int

    text = size.strip()
    return convert_file_size_to_int(int(text) if text.isdigit() else text)


def parse_max_memory(text: str | None) -> tuple[tuple[int | str, str], ...]:
    """``"0=70GiB,cpu=200GiB"`` as ((0, "70GiB"), ("cpu", "200GiB")); ``PlacementError``
    naming the bad part and the valid form."""
    if text is None or not str(text).strip():
        return ()
    out: dict[int | str, str] = {}
    for part in str(text).split(","):
        key, sep, size = (x.strip() for x in part.partition("="))
        device: int | str = int(key) if key.isdigit() else key.lower()
        why = (f"expected device=size, got {part.strip()!r}" if not sep or not size
               else f"unknown device {key!r}" if device != "cpu" and not isinstance(device, int)
               else f"device {key!r} is given twice" if device in out else "")
        if not why:
            try:
                _size_bytes(size)
            except ValueError:
                why = f"{size!r} is not a size"
        if why:
            raise PlacementError(f"{why}; valid: {MEMORY_FORM}")
        out[device] = size
    return tuple(out.items())


@dataclass(frozen=True)
class Placement:
    """How a model is spread over devices: ``strategy`` (``STRATEGIES``), ``max_memory``
    ((device, size) pairs; none: accelerate's free-memory estimate of every device) and
    ``offload_folder`` (where layers that fit nowhere go; none: such a model is refused)."""

    strategy: str = "auto"
    max_memory: tuple[tuple[int | str, str], ...] = ()
    offload_folder: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PlacementError(f"unknown device map {self.strategy!r}; valid: "
                                 f"{', '.join(STRATEGIES)}")

    @property
    def memory(self) -> dict[int | str, int] | None:
        """``max_memory`` in bytes, keyed as accelerate keys it (None: not capped)."""
        return {k: _size_bytes(v) for k, v in self.max_memory} or None

    @property
    def gpus(self) -> tuple[int, ...] | None:
        """GPU indices the caps name (None: every visible GPU may be used)."""
        named = tuple(k for k, _ in self.max_memory if isinstance(k, int))
        return named if named or self.max_memory else None

    @property
    def label(self) -> str:
        """The placement as one measuring condition, e.g. ``auto 0=70GiB,cpu=200GiB disk``."""
        caps = ",".join(f"{k}={v}" for k, v in self.max_memory) or "free-memory"
        return f"{self.strategy} {caps}" + (" disk" if self.offload_folder else "")


def _device_map(model: Any, placement: Placement) -> dict[str, Any]:
    """accelerate's device map for ``model`` under ``placement`` (as from_pretrained does)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory, get_max_memory

    no_split = getattr(model, "_no_split_modules", None) or []
    if placement.strategy == "sequential":
        memory = get_max_memory(placement.memory)
    else:
        memory = get_balanced_memory(model, placement.memory, no_split_module_classes=no_split,
                                     low_zero=placement.strategy == "balanced_low_0")
    return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)


def place(model: Any, placement: Placement) -> Any:
    """Dispatch ``model`` over devices as ``placement`` says; returns it, with its map in
    ``hf_device_map`` (as ``from_pretrained(device_map=...)`` leaves it).

    Disk-offloaded weights go to a fresh folder under the offload folder, removed when the
    model is: accelerate reuses a folder that already holds an index, which would run a
    previous variant's weights.
    """
    from accelerate import dispatch_model

    device_map = _device_map(model, placement)
    disk = [name for name, where in device_map.items() if where == "disk"]
    if len(disk) == len(device_map):
        raise PlacementError(f"nothing of the model fits in --glu-max-memory "
                             f"{placement.label!r}: raise the caps")
    folder = None
    if disk:
        if placement.offload_folder is None:
            raise PlacementError(f"the model does not fit in --glu-max-memory "
                                 f"{placement.label!r} ({', '.join(disk)} left over); raise "
                                 f"the caps or give --glu-offload-folder for disk offload")
        Path(placement.offload_folder).mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="offload-", dir=placement.offload_folder)
        weakref.finalize(model, shutil.rmtree, folder, True)
    pin_tied_storage(model)
    dispatch_model(model, device_map, offload_dir=folder,
                   skip_keys=getattr(model, "_skip_keys_device_placement", None))
    model.hf_device_map = device_map
    LOG.info("placed %s: %s", type(model).__name__, device_summary(device_map))
    return model


def pin_tied_storage(model: Any) -> list[Any]:
    """Keep the storage of ``model``'s tied parameters alive as long as the model.

    accelerate's ``dispatch_model`` remembers tied weights by the address of their storage
    at dispatch (its ``tied_params_map``) and hands the tied weight's device copy to any
    tensor later loaded at that address. Once the weight moves to a GPU, its CPU storage is
    freed and the address can be reused by another layer's weight read from the offload
    store, which then runs with the embedding instead (seen on an H200: a gate_proj of the
    embedding's shape). Holding the storage costs one CPU copy of each tied weight (the
    embedding, in tied-embedding models) and makes that reuse impossible. Returns what is
    held (``model.glu_prune_tied_storage``).
    """
    from accelerate.utils import find_tied_parameters

    params = dict(model.named_parameters(remove_duplicate=False))
    held = [params[group[0]].data for group in find_tied_parameters(model)
            if params[group[0]].device.type != "meta"]
    model.glu_prune_tied_storage = held  # a plain attribute: not a parameter nor a buffer
    return held


def device_summary(device_map: dict[str, Any]) -> str:
    """``0: 9 modules, 1: 8 modules, cpu: 1 module`` (what went where, in map order)."""
    counts: dict[str, int] = {}
    for where in device_map.values():
        counts[str(where)] = counts.get(str(where), 0) + 1
    return ", ".join(f"{k}: {n} module{'s' * (n != 1)}" for k, n in counts.items())


def placed_gpus(model: Any) -> tuple[int, ...]:
    """GPU indices ``model``'s device map uses (none for an unplaced model)."""
    found = set()
    for where in (getattr(model, "hf_device_map", None) or {}).values():
        text = str(where)
        if text.isdigit():
            found.add(int(text))
        elif text.startswith("cuda"):
            found.add(int(text.partition(":")[2] or 0))
    return tuple(sorted(found))
