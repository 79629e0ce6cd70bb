"""Safetensors shards read and written one tensor at a time (the streaming prune's I/O).

``safetensors.save_file`` needs every tensor of a file in memory at once, which is the whole
model for a one-shard output. The format is simple (an 8-byte header length, a JSON header
of dtype/shape/byte offsets, then raw bytes), and every output shape is known before any
weight is read (pruning keeps the same k neurons in every layer), so the header is written
first and each tensor's bytes are appended as they are produced. Reading goes through the
same header: a tensor is read with one ``readinto`` (no memory map whose touched pages would
stay resident), and tensors that do not change are copied file to file in chunks.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_CHUNK = 16 << 20  # bytes per copy step: large enough for disk speed, small next to a layer
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
          "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes lie in a shard."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


@dataclass
class Source:
    """A folder's tensors by name, from its shards' headers (no weight read)."""

    entries: dict[str, TensorEntry] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def _read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of one shard and where its data starts; a short or cut file is an error."""
    if not path.is_file():
        raise FileNotFoundError(f"shard {path.name} is missing from {path.parent}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else size
        if 8 + n > size:
            raise ValueError(f"shard {path.name} is truncated or not safetensors "
                             f"({size} bytes, header needs {8 + n})")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end > size:
        raise ValueError(f"shard {path.name} is truncated ({size} bytes, its header "
                         f"describes {8 + n + end})")
    return header, 8 + n


def shard_files(folder: Path) -> list[Path]:
    """The weight files of ``folder``: those its index names, or the single file."""
    index = folder / INDEX_FILE
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    if (folder / SINGLE_FILE).exists():
        return [folder / SINGLE_FILE]
    raise FileNotFoundError(f"{folder} has neither {INDEX_FILE} nor {SINGLE_FILE}; streaming "
                            f"needs a safetensors model folder (save_pretrained writes one)")


def read_source(folder: Path) -> Source:
    """Every tensor's location in ``folder``'s shards, each shard checked whole and present."""
    src = Source()
    for path in shard_files(folder):
        header, data = _read_header(path)
        src.metadata.update(header.pop("__metadata__", {}) or {})
        for name, v in header.items():
            a, b = v["data_offsets"]
            src.entries[name] = TensorEntry(path, v["dtype"], tuple(v["shape"]), data + a, b - a)
    return src


def read_tensor(entry: TensorEntry, into: torch.Tensor | None = None) -> torch.Tensor:
    """One tensor, read into fresh memory, or into ``into`` (uint8, at least its bytes)."""
    buf = torch.empty(entry.nbytes, dtype=torch.uint8) if into is None else into[:entry.nbytes]
    with open(entry.file, "rb") as f:
        f.seek(entry.start)
        if f.readinto(buf.numpy()) != entry.nbytes:
            raise ValueError(f"shard {entry.file.name} is truncated")
    return buf.view(DTYPES[entry.dtype]).reshape(entry.shape)


def copy_bytes(entry: TensorEntry, out: IO[bytes]) -> None:
    """Append one unchanged tensor's bytes to ``out`` in chunks (never whole in memory)."""
    with open(entry.file, "rb") as f:
        f.seek(entry.start)
        left = entry.nbytes
        while left:
            chunk = f.read(min(left, _CHUNK))
            if not chunk:
                raise ValueError(f"shard {entry.file.name} is truncated")
            out.write(chunk)
            left -= len(chunk)


def write_tensor(t: torch.Tensor, out: IO[bytes]) -> None:
    """Append a tensor's raw bytes to ``out``."""
    out.write(memoryview(t.contiguous().view(-1).view(torch.uint8).numpy()))  # no copy


def header_bytes(tensors: list[tuple[str, str, tuple[int, ...], int]],
                 metadata: dict[str, str]) -> bytes:
    """The length prefix and JSON header of a shard holding ``(name, dtype, shape, nbytes)``
    in that order, padded to 8 bytes as safetensors writes it."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def plan_shards(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    """Tensor names grouped into shards of at most ``max_bytes`` (a larger tensor alone)."""
    shards: list[list[str]] = [[]]
    used = 0
    for name, nbytes in sizes:
        if shards[-1] and used + nbytes > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += nbytes
    return shards


def shard_names(count: int) -> list[str]:
    """Output file names as transformers writes them."""
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def parse_size(text: str | int) -> int:
    """``"5GB"``, ``"500MB"``, ``"2GiB"`` or a byte count -> bytes."""
    if isinstance(text, int):
        return text
    units = {"GIB": 1 << 30, "MIB": 1 << 20, "KIB": 1 << 10, "GB": 10**9, "MB": 10**6,
             "KB": 10**3, "B": 1}
    s = text.strip().upper()
    for unit, mult in units.items():
        if s.endswith(unit) and s[:-len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(s[:-len(unit)]) * mult)
    if s.isdigit():
        return int(s)
    raise ValueError(f"shard size {text!r} is not a size; give e.g. 5GB, 500MB or 2GiB")
