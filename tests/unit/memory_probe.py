"""Peak resident memory of a child process above its own baseline (shared by the streaming
memory tests; ``from memory_probe import extra_peak_bytes``: pytest puts this folder on
``sys.path``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def extra_peak_bytes(child: str, src: Path, out: Path, mmap_threshold: int) -> int:
    """Run ``python -c child src out``, whose last line is ``"<base KiB> <peak KiB>"``, with
    glibc's mmap threshold fixed (the dynamic one keeps freed layers in the heap, so peaks
    would measure the allocator, not the code); returns (peak - base) in bytes."""
    run = subprocess.run([sys.executable, "-c", child, str(src), str(out)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1",
                              "MALLOC_MMAP_THRESHOLD_": str(mmap_threshold)})
    base_kib, peak_kib = map(int, run.stdout.split()[-2:])
    return (peak_kib - base_kib) * 1024


def assert_peak_is_one_layer(child: str, src: Path, out: Path, *, mmap_threshold: int,
                             layer_mlp_bytes: int) -> None:
    """The child's extra peak stays under one layer's MLP read whole, its scores' float
    copies and kept slices (3x the MLP) plus the 16 MiB copy buffer, on a model at least
    nine times that bound."""
    model_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    bound = 3 * layer_mlp_bytes + (16 << 20)
    assert model_bytes > 9 * bound, (model_bytes, bound)
    extra = extra_peak_bytes(child, src, out, mmap_threshold)
    assert extra < bound, (extra, bound, model_bytes)
