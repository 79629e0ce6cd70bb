"""Loading registered models: local folders, the shipped tiny weights, the hub, or
random weights of the exact architecture; the architecture check.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path
from typing import Any

from glu_prune.catalog.families import set_depth
from glu_prune.catalog.models import ARCHITECTURE_KEYS, ModelSpec, get_model_spec, make_config
from glu_prune.core.nonuniform import load_pruned

LOG = logging.getLogger(__name__)


MODELS_DIR_ENV = "GLU_PRUNE_MODELS_DIR"  # a folder holding <model-name>/ saved models


class WeightsUnavailable(RuntimeError):
    """The model's weights cannot be had here; the message says how to provide them."""


class UnreadableWeights(ValueError):
    """A weights file is there but cannot be read (truncated, garbage): a broken model, not
    a missing one, so the suite fails on it; the message names the file and the fix."""


class ArchitectureMismatch(ValueError):
    """Weights that load but are not the registered model (a wrong folder, a pruned save):
    a wrong model, not a missing one, so the suite fails on it instead of skipping."""


def check_architecture(model_or_config: Any, spec: ModelSpec, num_layers: int | None = None,
                       source: str = "") -> None:
    """Raise ``ArchitectureMismatch`` unless ``model_or_config`` has ``spec``'s architecture.

    ``num_layers``: the depth asked for (perf runs cut real shapes to a few layers); the
    registered depth when ``None``. The message names every differing field with both values.
    """
    config = getattr(model_or_config, "config", model_or_config)
    registered = {"model_type": "llama", **spec.architecture}  # presets without one are Llama
    expected = {key: (registered.get(key), "registered") for key in ARCHITECTURE_KEYS}
    if num_layers is not None:
        expected["num_hidden_layers"] = (num_layers, "requested")
    diffs = [f"{key} {getattr(config, key, None)!r} vs {why} {want!r}"
             for key, (want, why) in expected.items() if getattr(config, key, None) != want]
    if diffs:
        where = f" at {source}" if source else ""
        raise ArchitectureMismatch(
            f"{spec.name}: the model{where} is not {spec.name}'s registered architecture: "
            f"{', '.join(diffs)}")  # each interface appends its own way to the right folder


def default_dtype(device: str | None = None):
    """bfloat16 on GPU (as the published runs), float32 on CPU (bf16 matmuls are slow there)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def _weight_source(spec: ModelSpec, model_dir: str | os.PathLike | None) -> str:
    """Where ``weights="auto"`` loads from: explicit dir, $GLU_PRUNE_MODELS_DIR, shipped, hub."""
    root = model_dir or os.environ.get(MODELS_DIR_ENV)
    if root and (Path(root) / spec.name).is_dir():
        return str(Path(root) / spec.name)
    if root and (Path(root) / "config.json").is_file() and model_dir:
        return str(root)  # an explicit directory of exactly this model
    if spec.local_dir is not None:
        return str(spec.local_dir)
    return str(spec.hf_id)


def has_local_weights(name: str, model_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``load_model(weights="auto")`` would load from disk (never asks the hub)."""
    return (Path(_weight_source(get_model_spec(name), model_dir)) / "config.json").is_file()


def local_weights_folder(name: str, model_dir: str | os.PathLike | None = None
                         ) -> Path | None:
    """The folder ``load_model(weights="auto")`` would load ``name`` from, when it is on
    disk with safetensors weights (what streaming reads); None otherwise (the hub, random
    weights, a config-only shape)."""
    spec = get_model_spec(name)
    folder = Path(_weight_source(spec, model_dir))
    if spec.shape_only or not (folder / "config.json").is_file():
        return None
    return folder if any(folder.glob("*.safetensors")) else None


def weights_obtainable(name: str, model_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``load_model(weights="auto")`` can get weights: on disk, in the local hub
    cache, or from a reachable hub (it may still fail later, e.g. a licence not accepted)."""
    if has_local_weights(name, model_dir):
        return True
    from huggingface_hub import try_to_load_from_cache

    source = _weight_source(get_model_spec(name), model_dir)
    try:
        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return True
    except ValueError:  # not a hub id (a folder without config.json)
        return False
    return hub_reachable()


def _random_model(spec: ModelSpec, dtype, num_layers: int | None, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    config = make_config(spec.name, num_layers=num_layers)
    torch.manual_seed(seed)  # random weights are still reproducible
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def hub_offline() -> bool:
    """Whether the hub client is in offline mode (``HF_HUB_OFFLINE`` or
    ``TRANSFORMERS_OFFLINE`` set when it was imported): no request is even tried."""
    from huggingface_hub import constants

    return constants.is_offline_mode()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub can be asked for weights: not in offline mode, and its endpoint
    answers a TCP connect (probed once per process)."""
    return not hub_offline() and _endpoint_answers(timeout)


@functools.lru_cache(maxsize=1)
def _endpoint_answers(timeout: float) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect (once per process).

    Without the probe an offline machine spends ~45 s in the hub client's retries per model.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        LOG.info("hub endpoint %s unreachable: loading from the local cache only", url.hostname)
        return False


def _no_hub_help(spec: ModelSpec, source: str) -> str:
    """Why ``source`` cannot be had without the hub, and the ways to provide it."""
    online = f"run once online (HF_TOKEN, licence of {spec.hf_id} accepted) to fill the cache"
    if hub_offline():  # the user chose this: say so, not "unreachable"
        why = "offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)"
        online = f"unset HF_HUB_OFFLINE and {online}"
    else:
        why = "the hub is unreachable"
    return (f"{spec.name}: {why} and {source} is not in the local hub cache; set "
            f"{MODELS_DIR_ENV} to a folder holding {spec.name}/, or {online}")


def _offline_source(spec: ModelSpec, source: str) -> str:
    """``source`` itself, or its local hub-cache snapshot when the hub cannot be asked."""
    if Path(source).is_dir() or hub_reachable():
        return source
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(source, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise WeightsUnavailable(_no_hub_help(spec, source)) from None


def _pretrained_model(spec: ModelSpec, source: str, dtype, num_layers: int | None):
    from transformers import AutoConfig

    source = _offline_source(spec, source)
    try:
        # The config is read and checked first: a wrong model fails before its weights load.
        config = AutoConfig.from_pretrained(source)
        check_architecture(config, spec, source=source)
        if num_layers is not None:
            set_depth(config, num_layers)
        model = load_pruned(source, config=config, dtype=dtype)  # per-layer widths too
    except ArchitectureMismatch:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors' errors are no OSError
        unreadable = unreadable_weights(source) if Path(source).is_dir() else None
        if unreadable is not None:
            raise UnreadableWeights(f"{spec.name}: cannot read {unreadable[0]} "
                                    f"({unreadable[1]}); the file is corrupt or incomplete: "
                                    f"download or save the model again") from None
        if not isinstance(exc, (OSError, ValueError)):
            raise
        how = (f"set {MODELS_DIR_ENV} to a folder holding {spec.name}/ or log in to the hub "
               f"(HF_TOKEN) after accepting the licence of {spec.hf_id}")
        raise WeightsUnavailable(f"{spec.name}: weights not available from {source} "
                                 f"({_first_line(exc)}); {how}") from exc
    return model.eval()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def unreadable_weights(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """The first ``*.safetensors`` file of ``folder`` that cannot be opened, with the
    error's first line; None when all open."""
    from safetensors import safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():  # a truncated file may open but not read
                    fh.get_slice(key)
        except Exception as exc:  # noqa: BLE001 - SafetensorError is a bare Exception
            return path, _first_line(exc)
    return None


def load_tokenizer(name: str, *, model_dir: str | os.PathLike | None = None,
                   local_only: bool = False):
    """The model's tokenizer, or ``None`` when it cannot be had (speed tests feed token ids).

    ``local_only`` never asks the hub (random-weight runs must not wait on the network).
    """
    from transformers import AutoTokenizer

    spec = get_model_spec(name)
    source = _weight_source(spec, model_dir)
    try:
        if local_only and not Path(source).is_dir():
            return None  # random-weight runs never wait on the hub for a tokenizer
        return AutoTokenizer.from_pretrained(_offline_source(spec, source))
    except (OSError, ValueError, WeightsUnavailable) as exc:
        LOG.info("no tokenizer for %s from %s: %s", name, source, str(exc).splitlines()[0])
        return None


def load_model(name: str, *, weights: str = "auto", dtype=None, num_layers: int | None = None,
               device: str | None = None, model_dir: str | os.PathLike | None = None,
               seed: int = 0):
    """Load a registered model; returns ``(model, tokenizer)``.

    ``weights``: ``"auto"`` (local dir / $GLU_PRUNE_MODELS_DIR / shipped files / hub) or
    ``"random"`` (random weights of the exact architecture). Raises ``WeightsUnavailable``
    when ``"auto"`` weights cannot be had, and ``ArchitectureMismatch`` when the weights
    found are not the registered architecture. The tokenizer is ``None`` when unavailable.
    """
    import torch

    if weights not in ("auto", "random"):
        raise ValueError(f"weights must be 'auto' or 'random', got {weights!r}")
    spec = get_model_spec(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or default_dtype(device)
    if weights == "random" or spec.shape_only:  # a config.json-only folder: its shape
        model = _random_model(spec, dtype, num_layers, seed)
    else:
        source = _weight_source(spec, model_dir)
        if spec.local_dir is not None and source == str(spec.local_dir) \
                and not (spec.local_dir / "config.json").is_file():
            LOG.warning("%s: shipped weights missing at %s; using random weights", name, source)
            model = _random_model(spec, dtype, num_layers, seed)
        else:
            LOG.info("loading %s from %s (%s)", name, source, dtype)
            model = _pretrained_model(spec, source, dtype, num_layers)
    tokenizer = load_tokenizer(name, model_dir=model_dir,
                               local_only=weights == "random" or spec.shape_only)
    return model.to(device), tokenizer
