"""A model the user brings: a local folder or a hub id, checked before any work.

:func:`resolve_source` reads only the config (so a wrong source fails in a second, naming
what is wrong: a missing folder, a folder without ``config.json``, a family glu-prune cannot
prune, a hub id while offline); :func:`load_source` then loads its weights once (one copy).
Every failure is a :class:`BadSource` with a one-line message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from glu_prune.catalog.families import Family, UnsupportedFamily, family_of
from glu_prune.catalog.models import MODELS
from glu_prune.catalog.sources import BadSource, is_hub_id, read_source_config, source_name
from glu_prune.core.loading import default_dtype, hub_offline, hub_reachable, load_model
from glu_prune.core.nonuniform import load_pruned

LOG = logging.getLogger(__name__)

@dataclass(frozen=True)
class Source:
    """A checked model source: its display name, where it is, its config and family."""

    name: str  # the folder's or the hub id's last part, lower-cased ("my-qwen")
    location: str  # a folder path or a hub id
    config: Any
    family: Family

    def shape(self) -> tuple[int, int]:
        """(MLP width, hidden size) from the config."""
        return self.family.width(self.config), int(self.config.hidden_size)


def _folder_location(text: str, registered: list[str]) -> str:
    """The folder ``text`` names, checked as the suite checks it (catalog.sources); a name
    that is no folder also lists the registered names the caller accepts."""
    try:
        _, folder = read_source_config(text)
    except BadSource as exc:
        names = f"; or a registered name: {', '.join(registered)}" if registered else ""
        raise BadSource(f"model source {exc}{names}") from None
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

    location = _hub_location(text) if is_hub_id(text) else _folder_location(
        text, registered or [])
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
        model = load_pruned(source.location, config=source.config, dtype=dtype)
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


def user_source(text: str, model_dir: str | None = None) -> Source | None:
    """The checked source ``text`` names, or ``None`` when it is a registered model name."""
    if text in MODELS:
        return None
    if model_dir:
        raise BadSource(f"--model-dir goes with a registered model ({', '.join(MODELS)}); "
                        f"give the folder {model_dir!r} as the model instead")
    return resolve_source(text, registered=MODELS.names())


def load_named(text: str, source: Source | None, *, weights: str = "auto",
               model_dir: str | None = None, seed: int = 0):
    """``(name, model, tokenizer)``: the registered model ``text`` (``source`` None), or the
    source's (random weights of its shape with ``weights="random"``)."""
    if source is None:
        return text, *load_model(text, weights=weights, model_dir=model_dir)
    return source.name, *load_source(source, weights=weights, seed=seed)
