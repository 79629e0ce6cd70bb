"""The lock that serializes read-modify-write of baseline files (quality and speed alike)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # no flock here: single-process updates are still safe
    fcntl = None


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (POSIX flock) while its files are re-read,
    merged and rewritten, so concurrent pins (xdist workers, two runs) lose nothing."""
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
