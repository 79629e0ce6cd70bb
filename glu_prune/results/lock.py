"""The report folder's lock: one run writes a folder at a time."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)


LOCK_NAME = ".glu-prune.lock"


class ReportFolderBusy(OSError):
    """Another live run holds the report folder's lock (an OSError, like EBUSY)."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (unknown counts as alive)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


@dataclass
class ReportLock:
    """An exclusive lock on a report folder: ``<folder>/.glu-prune.lock``, created with
    O_EXCL and holding this run's pid, host, start time and command.

    Two runs writing one folder would silently mix or overwrite each other's results, so
    the second is refused up front, naming the holder. A lock left by a dead process on
    this host is taken over with a warning (``taken_over``); one from another host is
    never judged stale (its pid means nothing here). ``release`` removes the lock, and
    the folders ``acquire`` created when nothing else was written into them.
    """

    path: Path
    holder: dict[str, Any]
    created: list[Path] = field(default_factory=list)  # deepest first
    taken_over: str | None = None

    @classmethod
    def acquire(cls, folder: str | os.PathLike, command: str = "") -> ReportLock:
        """Take the lock of ``folder`` (created if missing); ReportFolderBusy when held."""
        folder = Path(folder).absolute()
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "token": secrets.token_hex(8)}  # tells two locks of one process apart
        lock = cls(folder / LOCK_NAME, holder, created)
        if not lock._create():
            lock._take_over_stale()
        return lock

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.holder, fh)
        return True

    def _take_over_stale(self) -> None:
        """Replace a dead local process's lock; raise ReportFolderBusy for any other."""
        other = read_lock(self.path)
        stale = (other.get("host") == self.holder["host"] and isinstance(other.get("pid"), int)
                 and not _pid_alive(other["pid"]))
        if not stale:
            raise ReportFolderBusy(_busy_message(self.path, other))
        # rename first: of two runs taking over at once only one can move the stale file
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            raise ReportFolderBusy(_busy_message(self.path, read_lock(self.path))) from None
        moved = read_lock(aside)
        if moved != other:  # another run took it over first: give its lock back
            os.rename(aside, self.path)
            raise ReportFolderBusy(_busy_message(self.path, moved))
        aside.unlink()
        if not self._create():
            raise ReportFolderBusy(_busy_message(self.path, read_lock(self.path)))
        self.taken_over = (f"took over the lock {self.path} of a run that is gone "
                           f"({_describe(other)}): its results may be incomplete")
        LOG.warning("%s", self.taken_over)

    def release(self) -> None:
        """Remove the lock (if still ours) and the empty folders ``acquire`` created."""
        if read_lock(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        for folder in self.created:
            try:
                folder.rmdir()  # only when empty: written results stay
            except OSError:
                break

    def __enter__(self) -> ReportLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_lock(path: Path) -> dict[str, Any]:
    """The holder recorded in a lock file ({} when it is gone or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: the lock file is empty or unreadable"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


def _busy_message(path: Path, holder: dict[str, Any]) -> str:
    return (f"the report folder {path.parent} is in use by another run ({_describe(holder)}); "
            f"lock file {path}. Wait for that run, give another --glu-report folder, or, "
            f"if that run is gone, delete the lock file")
