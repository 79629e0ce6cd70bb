"""User model sources: a local folder or a hub id becomes a ``ModelSpec`` of the one model
registry (``glu_prune.catalog.models.MODELS``), beside the presets.

A source is checked before any work: the folder exists and holds a ``config.json``, its
family has a gated MLP, its weights (when any) are readable; a hub id needs its config
from the hub or the local hub cache. Every failure is one ``BadSource`` line.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from safetensors import safe_open

from glu_prune.catalog.families import family_of
from glu_prune.catalog.models import BASE_LEVELS, INSTRUCT_LEVELS, MODELS, ModelSpec

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class BadSource(ValueError):
    """A model source the suite cannot use; ``str()`` is the one-line reason."""


def source_name(source: str) -> str:
    """The model's name in test ids: the folder's or the hub id's last part, lower-cased
    (``./my-qwen`` -> ``my-qwen``, ``Qwen/Qwen2.5-0.5B`` -> ``qwen2.5-0.5b``)."""
    return Path(str(source).rstrip("/\\")).name.lower()


def is_hub_id(source: str) -> bool:
    """Whether ``source`` reads as ``owner/name`` and is not an existing path."""
    return bool(_HUB_ID.match(source)) and not Path(source).exists()


def read_source_config(source: str, cwd: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """``(config.json as a dict, folder or None for a hub id)``; ``BadSource`` when absent."""
    folder = Path(cwd or ".", source)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BadSource(f"{source}: no config.json in this folder; valid: a folder saved "
                            f"with save_pretrained (config.json, weights optional)")
        return _json(folder / "config.json", source), folder.resolve()
    if not is_hub_id(source):
        what = "is a file" if folder.exists() else "does not exist"
        raise BadSource(f"{source}: {what}; valid: a model folder or a hub id like "
                        f"Qwen/Qwen2.5-0.5B")
    return _json(Path(_hub_config(source)), source), None


def _hub_config(hub_id: str) -> str:
    """The path of ``hub_id``'s config.json: the local hub cache, else the hub itself."""
    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return cached
    if hub_constants.is_offline_mode():
        raise BadSource(f"{hub_id}: hub id while offline (HF_HUB_OFFLINE is set) and not in "
                        f"the local hub cache; valid: a local folder, or run once online")
    try:
        return hf_hub_download(hub_id, "config.json")
    except Exception as exc:  # network, auth, missing repo: all one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadSource(f"{hub_id}: cannot read its config.json from the hub ({first})") from None


def _json(path: Path, source: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadSource(f"{source}: config.json is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise BadSource(f"{source}: config.json has no model_type; valid: a transformers "
                        f"config saved with save_pretrained")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The folder's weight files (none: a shape-only folder)."""
    return sorted(p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern))


def check_weights(folder: Path, source: str) -> None:
    """Every safetensors file's header and tensor index read (a truncated or corrupt file
    fails here, in milliseconds, not after the run has started)."""
    for path in weight_files(folder):
        if path.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(path), framework="pt") as handle:
                list(handle.keys())
        except Exception as exc:  # safetensors raises its own error types
            raise BadSource(f"{source}: corrupt weights in {path.name} ({exc}); valid: "
                            f"files written by save_pretrained") from None


def spec_from_source(source: str, cwd: Path | None = None, **settings: Any) -> ModelSpec:
    """The ``ModelSpec`` of a user source; ``settings`` override ``ModelSpec`` fields
    (``name``, ``levels``, ``instruct``, ``benchmark_set``...). ``BadSource`` on a bad one.
    A preset's name or hub id is that preset (its architecture is embedded: no hub needed)."""
    preset = _preset(source, cwd)
    if preset is not None:
        return replace(preset, **settings) if settings else preset
    config, folder = read_source_config(source, cwd)
    try:
        family_of(config["model_type"])
    except ValueError as exc:  # UnsupportedFamily: one line naming the supported families
        raise BadSource(f"{source}: {exc}") from None
    shape_only = False
    if folder is not None:
        check_weights(folder, source)
        shape_only = not weight_files(folder)
    instruct = bool(settings.pop("instruct", False))
    spec = ModelSpec(source_name(source), None if folder else source, config,
                     INSTRUCT_LEVELS if instruct else BASE_LEVELS, instruct=instruct,
                     benchmark_set="instruct" if instruct else "base", local_dir=folder,
                     shape_only=shape_only, source=source)
    return replace(spec, **settings)


def _preset(source: str, cwd: Path | None) -> ModelSpec | None:
    """The preset named by ``source`` (its name or hub id), unless a folder of that name exists."""
    if Path(cwd or ".", source).exists():
        return None
    return next((s for s in MODELS.values() if s.source is None
                 and source in (s.name, s.hf_id)), None)


def register(spec: ModelSpec) -> ModelSpec:
    """Add a user model to the registry; the same spec again is a no-op (pytester runs
    several sessions in one process), another model under a taken name a ``BadSource``."""
    known = MODELS.get(spec.name, None)
    if known is None:
        return MODELS.register(spec.name, spec)
    if known != spec:
        what = "a preset" if known.source is None else f"the source {known.source}"
        raise BadSource(f"{spec.source}: its name {spec.name!r} is taken by {what}; valid: "
                        f"rename the folder or give it another name in the models file")
    return known
