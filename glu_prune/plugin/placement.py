"""The placement options: ``--glu-device-map``, ``--glu-max-memory``, ``--glu-offload-folder``,
one field of ``Options`` (``placement_field``): declared, checked in one line each before
any model loads, and read into one ``Placement`` (``glu_prune.core.placement``) that variant
building, evaluation, latency and energy share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from glu_prune.core.placement import (MEMORY_FORM, STRATEGIES, Placement, PlacementError,
                                      parse_max_memory)
from glu_prune.plugin.checks import BadOption, writable_dir
from glu_prune.plugin.option_spec import Parsing, Spec, options

DEVICE_MAP, MAX_MEMORY, OFFLOAD = "--glu-device-map", "--glu-max-memory", "--glu-offload-folder"

SPECS = (
    Spec(DEVICE_MAP, f"spread each variant over GPUs, CPU and disk with accelerate's device "
                     f"map, as lm-eval's parallelize=True does: {', '.join(STRATEGIES)}; "
                     f"used by accuracy, perplexity, latency and energy (default: none, one "
                     f"device)", metavar="STRATEGY"),
    Spec(MAX_MEMORY, "memory each device may hold under --glu-device-map, e.g. "
                     "'0=70GiB,1=70GiB,cpu=200GiB' (default: the free memory of every "
                     "visible GPU and the CPU)", metavar="CAPS"),
    Spec(OFFLOAD, "folder for layers that fit on no device under --glu-device-map (disk "
                  "offload; default: none, such a model is refused)", metavar="DIR"),
)


def read_placement(p: Parsing) -> Placement | None:
    """The three options as one ``Placement`` (None without ``--glu-device-map``);
    ``BadOption`` (one line: the option, the value, what is valid) for a bad one."""
    strategy, memory, folder = p.raw(DEVICE_MAP), p.raw(MAX_MEMORY), p.raw(OFFLOAD)
    if strategy is None:
        given = next(((o, v) for o, v in ((MAX_MEMORY, memory), (OFFLOAD, folder)) if v), None)
        if given:
            raise BadOption(*given, f"also give {DEVICE_MAP} ({', '.join(STRATEGIES)})",
                            f"needs {DEVICE_MAP}")
        return None
    if strategy not in STRATEGIES:
        raise BadOption(DEVICE_MAP, strategy, ", ".join(STRATEGIES), "unknown device map")
    device = p.value("device")
    if device is not None:
        raise BadOption("--glu-device", device, f"one of --glu-device and {DEVICE_MAP}",
                        f"{DEVICE_MAP} {strategy} chooses the devices itself")
    try:
        caps = parse_max_memory(memory)
    except PlacementError as exc:
        raise ValueError(f"{MAX_MEMORY}={memory}: {exc}") from None
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [k for k, _ in caps if isinstance(k, int) and k >= visible]
    if missing:
        raise BadOption(MAX_MEMORY, memory, "GPU indices below the visible count, or cpu",
                        f"GPU {missing[0]} does not exist: {visible} CUDA device(s) visible")
    if folder is not None:
        writable_dir(OFFLOAD, folder, p.cwd)
    return Placement(strategy, caps, None if folder is None else str(Path(p.cwd, folder)))


def placement_field() -> Any:
    """The ``Options`` field the three options fill."""
    return options(SPECS, read_placement)


def refuse_under_xdist(config: pytest.Config, placement: Placement | None) -> None:
    """A placed run spans devices; xdist pins one GPU per worker, so the two exclude each
    other: stop with one line (before any worker starts)."""
    if placement is not None and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(f"glu-prune: {DEVICE_MAP} spreads one model over several "
                                f"devices and -n pins one GPU per worker: run without -n")


__all__ = ["MEMORY_FORM", "SPECS", "placement_field", "read_placement", "refuse_under_xdist"]
