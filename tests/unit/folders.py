"""Model folders compared tensor by tensor (shared by the streaming tests; ``from folders
import ...``: pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from glu_prune.core import shards


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``folder``'s safetensors shards, by name."""
    out: dict[str, torch.Tensor] = {}
    for path in shards.shard_files(folder):
        out.update(load_file(path))
    return out


def assert_same_folders(a_dir: Path, b_dir: Path) -> None:
    """The same tensor names, dtypes, shapes and bytes, and the same config.json."""
    a, b = tensors(a_dir), tensors(b_dir)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name].view(torch.uint8), b[name].view(torch.uint8)), name
    config = lambda f: json.loads((f / "config.json").read_text())  # noqa: E731
    assert config(a_dir) == config(b_dir)
