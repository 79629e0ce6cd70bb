"""The on-disk result cache: one JSON file per (variant, benchmark, settings), written
atomically, read back only when it is exactly this benchmark's result.

lm-eval's own response cache is never used: it is keyed by request, not by model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from glu_prune.evaluation.settings import BenchResult

LOG = logging.getLogger(__name__)

__all__ = ["CacheEntryWarning", "ResultCache", "atomic_write_text"]


class CacheEntryWarning(UserWarning):
    """A cache entry was unreadable or held a non-finite number; it is being recomputed.
    A warning (not only a log line) so pytest shows it in its summary, xdist workers' too."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class ResultCache:
    """On-disk cache: ``<root>/<slug>/<benchmark>.<key16>.json``, one file per result."""

    root: Path
    hits: int = 0
    misses: int = 0
    _reported: set[Path] = field(default_factory=set, repr=False)

    def path(self, slug: str, benchmark: str, key: str) -> Path:
        return Path(self.root) / slug / f"{benchmark}.{key[:16]}.json"

    def get(self, slug: str, benchmark: str, key: str,
            metrics: Sequence[str] = ()) -> BenchResult | None:
        """The cached result, or None. An entry that cannot be read as this benchmark's
        result (truncated, garbage, a wrong layout, a missing one of ``metrics``) is
        named in one warning and treated as absent, so it is recomputed and overwritten.
        The runner never writes a non-finite value, so one here is corruption, not a
        result: it is treated the same way."""
        path = self.path(slug, benchmark, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            result = BenchResult.from_json(json.loads(path.read_text(encoding="utf-8")),
                                           metrics)
            if (result.slug, result.benchmark) != (slug, benchmark):
                raise ValueError(f"holds {result.slug} / {result.benchmark}")
        except (OSError, ValueError) as exc:  # JSON and UTF-8 errors are ValueErrors
            self._report(path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return result

    def _report(self, path: Path, exc: Exception) -> None:
        if path not in self._reported:
            self._reported.add(path)
            warnings.warn(f"glu-prune: ignoring unreadable cache entry {path} ({exc}); it "
                          f"will be recomputed", CacheEntryWarning, stacklevel=3)

    def put(self, result: BenchResult, key: str) -> Path:
        path = self.path(result.slug, result.benchmark, key)
        atomic_write_text(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        return path
