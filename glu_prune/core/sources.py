"""A model the user brings: a local folder or a hub id, checked before any work.

:func:`resolve_source` reads only the config (so a wrong source fails in a second, naming
what is wrong: a missing folder, a folder without ``config.json``, a family glu-prune cannot
prune, a hub id while offline); :func:`load_source` then loads its weights once (one copy).
Every failure is a :class:`BadSource` with a one-line message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glu_prune.catalog.families import Family, UnsupportedFamily, family_of
from glu_prune.core.loading import default_dtype, hub_offline, hub_reachable

LOG = logging.getLogger(__name__)

# owner/name as the hub spells repository ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BadSource(ValueError):
    """A model source that cannot be used; the message is one line saying why."""


@dataclass(frozen=True)
class Source:
    """A checked model source: its display name, where it is, its config and family."""

    name: str  # the folder's or the hub id's last part, lower-cased ("my-qwen")
    location: str  # a folder path or a hub id
    config: Any
    family: Family


def source_name(text: str) -> str:
    """The name a source goes by in reports and test ids: its last path part, lower-cased."""
    return Path(str(text).rstrip("/\\")).name.lower() or str(text)


def _looks_like_folder(text: str) -> bool:
    return text.startswith((".", "/", "~")) or Path(text).exists() or "\\" in text \
        or not _HUB_ID.match(text)


def _folder_config_path(text: str, registered: list[str]) -> str:
    folder = Path(text).expanduser()
    if not folder.exists():
        names = f" ({', '.join(registered)})" if registered else ""
        raise BadSource(f"model source {text!r}: no such folder (give a folder holding a "
                        f"config.json, a hub id such as Qwen/Qwen2.5-0.5B, or a registered "
                        f"name{names})")
    if not folder.is_dir():
        raise BadSource(f"model source {text!r} is a file; give the folder holding its "
                        f"config.json")
    if not (folder / "config.json").is_file():
        raise BadSource(f"model source {text!r}: the folder has no config.json (save the "
                        f"model with save_pretrained, or point at the folder that holds it)")
    return str(folder)


def _hub_location(text: str) -> str:
    """The hub id itself when the hub can be asked; its cached snapshot when offline."""
    if hub_reachable():
        return text
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(text, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        why = "offline mode (HF_HUB_OFFLINE is set)" if hub_offline() else "hub unreachable"
        raise BadSource(f"model source {text!r}: a hub id, but {why} and it is not in the "
                        f"local hub cache; download it once online, or give a local folder"
                        ) from None


def resolve_source(text: str, registered: list[str] | None = None) -> Source:
    """Check ``text`` (a folder or a hub id) from its config alone; ``BadSource`` if unusable.

    ``registered``: names the caller also accepts, listed when ``text`` is no folder."""
    from transformers import AutoConfig

    location = _folder_config_path(text, registered or []) if _looks_like_folder(text) else _hub_location(text)
    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadSource(f"model source {text!r}: its config.json cannot be read ({first})"
                        ) from None
    try:
        family = family_of(config)
    except UnsupportedFamily as exc:
        raise BadSource(f"model source {text!r}: {exc}") from None
    return Source(source_name(text), location, config, family)


def load_source(source: Source, *, weights: str = "auto", dtype=None,
                device: str | None = None, seed: int = 0):
    """``(model, tokenizer)`` of a checked source, loaded once (one copy of the weights).

    ``weights="random"``: seeded random weights in the source's exact shape (a folder that
    holds only ``config.json``). Unreadable weights are a ``BadSource``; the tokenizer is
    ``None`` when the source has none."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    if weights not in ("auto", "random"):
        raise ValueError(f"weights must be 'auto' or 'random', got {weights!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or default_dtype(device)
    if weights == "random":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(source.config, dtype=dtype)
        return model.eval().to(device), None
    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, config=source.config,
                                                     dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadSource(f"model source {source.location!r}: its weights cannot be loaded "
                        f"({first})") from None
    return model.eval().to(device), _tokenizer(source.location)


def _tokenizer(location: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        LOG.info("no tokenizer at %s: %s", location, str(exc).strip()[:200])
        return None
