"""Saving a model folder atomically: a new folder beside the target, renamed into place,
so an interrupted save (disk full, Ctrl-C) leaves the old folder or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable

LOG = logging.getLogger(__name__)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``force`` (checked before any model work)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"--out {out} is not empty; pass --force to replace it (the old "
                         f"folder stays as it is until the new one is completely written)")


def _sibling(out: Path, tag: str) -> Path:
    """A hidden, unique path beside ``out`` (same file system, so renames are atomic)."""
    return out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def usual_modes(folder: Path) -> None:
    """Give every file in ``folder`` the mode a plain ``open`` gives (0666 less the umask):
    transformers writes ``model.safetensors`` through a private temporary file (0600)."""
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it; put it straight back
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def write_folder_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a new folder beside ``out``, then put it in ``out``'s place.

    Until the new folder is complete ``out`` is untouched, and a failure (disk full,
    Ctrl-C) removes the temporary folder: ``out`` holds the old variant or the new one,
    never a mix. An existing ``out`` is renamed aside, replaced, then deleted; if the
    second rename fails the old one is put back.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "new")
    tmp.mkdir()  # not mkdtemp: a saved model keeps the umask's permissions, not 0700
    try:
        write(tmp)
        usual_modes(tmp)
        if not out.exists():
            os.rename(tmp, out)
            return
        old = _sibling(out, "old")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():  # the new folder is in place; only the old copy's space is lost
        LOG.warning("could not delete the replaced folder %s; delete it by hand", old)
