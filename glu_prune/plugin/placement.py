"""The placement options: ``--glu-device-map``, ``--glu-max-memory``, ``--glu-offload-folder``,
declared, checked (one line each, before any model loads) and read into one ``Placement``
(``glu_prune.core.placement``) that variant building, evaluation, latency and energy share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from glu_prune.core.placement import STRATEGIES, Placement, PlacementError, parse_max_memory

Get = Callable[[str], Any]  # option name -> value (None: not given)

DEVICE_MAP, MAX_MEMORY, OFFLOAD = "--glu-device-map", "--glu-max-memory", "--glu-offload-folder"


def add_placement_options(group: Any) -> None:
    """The three options, in the plugin's group (each help ends with its default)."""
    group.addoption(DEVICE_MAP, default=None, metavar="STRATEGY",
                    help=f"spread each variant over GPUs, CPU and disk with accelerate's device "
                         f"map, as lm-eval's parallelize=True does: {', '.join(STRATEGIES)}; "
                         f"used by accuracy, perplexity, latency and energy "
                         f"(default: none, one device)")
    group.addoption(MAX_MEMORY, default=None, metavar="CAPS",
                    help="memory each device may hold under --glu-device-map, e.g. "
                         "'0=70GiB,1=70GiB,cpu=200GiB' (default: the free memory of every "
                         "visible GPU and the CPU)")
    group.addoption(OFFLOAD, default=None, metavar="DIR",
                    help="folder for layers that fit on no device under --glu-device-map "
                         "(disk offload; default: none, such a model is refused)")


def _bad(option: str, value: Any, valid: str, problem: str = "") -> ValueError:
    """The one-line message of the plugin's other option checks."""
    return ValueError(f"{option}={value}: {problem + '; ' if problem else ''}valid: {valid}")


def check_placement(get: Get, cwd: Path) -> None:
    """Raise ``ValueError`` (one line naming the option, the value and what is valid) for a
    bad placement option; reads all three (and ``--glu-device``, which a map replaces)."""
    strategy, memory, folder = get(DEVICE_MAP), get(MAX_MEMORY), get(OFFLOAD)
    device = get("--glu-device")
    if strategy is None:
        given = next(((o, v) for o, v in ((MAX_MEMORY, memory), (OFFLOAD, folder)) if v), None)
        if given:
            raise _bad(*given, f"also give {DEVICE_MAP} ({', '.join(STRATEGIES)})",
                       f"needs {DEVICE_MAP}")
        return
    if strategy not in STRATEGIES:
        raise _bad(DEVICE_MAP, strategy, ", ".join(STRATEGIES), "unknown device map")
    if device is not None:
        raise _bad("--glu-device", device, f"one of --glu-device and {DEVICE_MAP}",
                   f"{DEVICE_MAP} {strategy} chooses the devices itself")
    try:
        caps = parse_max_memory(memory)
    except PlacementError as exc:
        raise ValueError(f"{MAX_MEMORY}={memory}: {exc}") from None
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [k for k, _ in caps if isinstance(k, int) and k >= visible]
    if missing:
        raise _bad(MAX_MEMORY, memory, "GPU indices below the visible count, or cpu",
                   f"GPU {missing[0]} does not exist: {visible} CUDA device(s) visible")
    if folder is not None:
        _check_folder(Path(cwd, folder), folder)


def _check_folder(path: Path, given: str) -> None:
    """An offload folder this user can write (created when absent, at placement time)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    valid = "a folder this user can write (created when absent)"
    if not existing.is_dir():
        raise _bad(OFFLOAD, given, valid, "a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _bad(OFFLOAD, given, valid, f"{existing} is not writable")


def read_placement(get: Get, cwd: Path) -> Placement | None:
    """The checked options as one ``Placement`` (None without ``--glu-device-map``)."""
    strategy = get(DEVICE_MAP)
    if strategy is None:
        return None
    folder = get(OFFLOAD)
    return Placement(strategy, parse_max_memory(get(MAX_MEMORY)),
                     None if folder is None else str(Path(cwd, folder)))


def refuse_under_xdist(config: pytest.Config, placement: Placement | None) -> None:
    """A placed run spans devices; xdist pins one GPU per worker, so the two exclude each
    other: stop with one line (before any worker starts)."""
    if placement is not None and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(f"glu-prune: {DEVICE_MAP} spreads one model over several "
                                f"devices and -n pins one GPU per worker: run without -n")
