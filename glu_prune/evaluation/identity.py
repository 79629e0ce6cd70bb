"""Content identities for the result cache: of a model as evaluated, and of a task's data.

A cache hit must mean "the same model on the same test", so both identities hash content,
never names: every byte of every weight, the config and the tokenizer; the task's resolved
definition and every document that would be evaluated. Both are computed before any model
time is spent (that is what the cache saves).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

LOG = logging.getLogger(__name__)

DIGEST_CHARS = 32  # 128 bits of sha256: collisions are not a practical concern
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of live objects differ per process


# ---------------------------------------------------------------- the model


def tensor_digest(tensor: Any) -> str:
    """sha256 of a tensor's values in logical (row-major) order, with shape and dtype.

    bf16 has no numpy dtype, so the bytes are taken through a torch.uint8 view of a
    contiguous CPU copy; hashlib releases the GIL on large buffers, so threads help.
    """
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.sha256(f"{tuple(tensor.shape)}:{tensor.dtype};".encode())
    h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


def _unique_tensors(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split a state dict into tensors to hash and aliases (tied weights: one storage)."""
    first: dict[tuple, str] = {}
    unique: dict[str, Any] = {}
    alias: dict[str, str] = {}
    for name, t in state.items():
        where = (t.device, t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and where in first:
            alias[name] = first[where]  # the same values by construction: hash them once
        else:
            first.setdefault(where, name)
            unique[name] = t
    return unique, alias


def _own_tensors(module: Any) -> Iterator[tuple[str, Any]]:
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)


def _offloaded_digests(model: Any, names: set[str]) -> dict[str, str]:
    """Digests of the tensors a placed model offloaded to CPU or disk (meta tensors in its
    state dict), read back by accelerate one module at a time: only that module's weights
    are in CPU memory at once, so a model bigger than memory can still be identified."""
    from accelerate.utils import align_module_device

    out: dict[str, str] = {}
    for prefix, module in model.named_modules():
        own = {f"{prefix}.{n}" if prefix else n: n for n, t in _own_tensors(module)
               if t.device.type == "meta"}
        if not own.keys() & names:
            continue
        with align_module_device(module, "cpu"):
            tensors = dict(_own_tensors(module))
            for full, n in own.items():
                if full in names:
                    out[full] = tensor_digest(tensors[n])
    return out


def weights_digest(model: Any, workers: int | None = None) -> str:
    """One digest over every tensor of ``model.state_dict()`` (names, shapes, dtypes, bytes),
    offloaded weights included; tied weights hash to the same digest whether or not their
    tie is visible (a placement may hold the two names apart)."""
    state = model.state_dict()
    offloaded = {name for name, t in state.items() if t.device.type == "meta"}
    digests = _offloaded_digests(model, offloaded) if offloaded else {}
    unique, alias = _unique_tensors({k: t for k, t in state.items() if k not in offloaded})
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests.update(zip(unique, pool.map(tensor_digest, unique.values())))
    missing = sorted(offloaded - digests.keys())
    if missing:
        raise ValueError(f"offloaded weights {missing[:3]} could not be read back to hash")
    h = hashlib.sha256()
    for name in state:
        h.update(f"{name}={digests[name] if name in digests else digests[alias[name]]};".encode())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the token ids and prompts: the full backend tokenizer
    (vocabulary, merges, normalizer, added tokens), special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    extra = {"class": type(tokenizer).__name__,
             "special": getattr(tokenizer, "special_tokens_map", {}),
             "chat_template": getattr(tokenizer, "chat_template", None),
             "padding_side": getattr(tokenizer, "padding_side", None),
             "truncation_side": getattr(tokenizer, "truncation_side", None),
             "model_max_length": getattr(tokenizer, "model_max_length", None)}
    return hashlib.sha256(canonical_json([body, extra]).encode()).hexdigest()


def model_identity(model: Any, tokenizer: Any) -> str:
    """Content identity of a model as evaluated: every weight byte, the config, the
    generation config, the tokenizer, and the device type and attention kernel (they
    change the numerics). Any change to any of them is a new identity."""
    config = model.config
    parts = {"config": config.to_json_string(use_diff=False),
             "generation": _generation_config(model),
             "device": str(getattr(getattr(model, "device", None), "type", None)),
             "attention": getattr(config, "_attn_implementation", None),
             "weights": weights_digest(model),
             "tokenizer": tokenizer_fingerprint(tokenizer) if tokenizer is not None else None}
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:DIGEST_CHARS]


def _generation_config(model: Any) -> str | None:
    gen = getattr(model, "generation_config", None)
    return gen.to_json_string(use_diff=False) if gen is not None else None


# ---------------------------------------------------------------- the task


def _plain(obj: Any) -> Any:
    """JSON stand-in for what ``json`` cannot write, the same in every process."""
    if callable(obj) and not isinstance(obj, type):
        try:
            return inspect.getsource(obj)  # the code decides the scores, not its name
        except (OSError, TypeError):
            return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset)):
        return sorted(canonical_json(x) for x in obj)
    if isinstance(obj, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(obj).hexdigest()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars in dataset rows
        return obj.tolist()
    return f"{type(obj).__qualname__}:{_ADDRESS.sub('', repr(obj))}"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``obj`` (sorted keys; functions as their source)."""
    return json.dumps(obj, sort_keys=True, default=_plain, ensure_ascii=False)


def _task_config(task: Any) -> dict[str, Any]:
    """The resolved task config, without where the YAML file happens to live."""
    config = dict(task.dump_config())
    meta = config.get("metadata")
    if isinstance(meta, dict):
        config["metadata"] = {k: v for k, v in meta.items() if k != "config_source"}
    return config


def _functions(obj: Any) -> Iterator[Any]:
    """Every function inside a task config (top level, and in lists and dicts)."""
    if callable(obj) and not isinstance(obj, type):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _functions(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _functions(value)


def _task_code(task: Any) -> list[str]:
    """The whole source of every module a task's functions live in.

    lm-eval's config records each function's own text only; a helper it calls (the tiny
    ifeval's checks, a module constant) decides scores too, and an edit there must not be
    served from the cache. A module with no source file is named instead.
    """
    sources = set()
    for fn in _functions(task.config.to_dict(keep_callable=True)):
        module = inspect.getmodule(fn)
        try:
            sources.add(inspect.getsource(module))
        except (OSError, TypeError):
            sources.add(f"module:{getattr(module, '__name__', None)}")
    return sorted(sources)


def _leaves(objects: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """("group"|"task", object) for every group and leaf task under ``objects``."""
    from lm_eval.api.group import Group

    for obj in objects:
        if isinstance(obj, Group):
            yield "group", obj
            yield from (("group", g) for g in obj.get_all_groups())
            yield from (("task", t) for t in obj.get_all_tasks())
        else:
            yield "task", obj


def _hash_docs(h: Any, docs: Iterable[Any]) -> int:
    count = 0
    for doc in docs:
        h.update(canonical_json(doc).encode())
        h.update(b"\n")
        count += 1
    return count


def task_fingerprint(objects: Iterable[Any], limit: int | None) -> str:
    """sha256 of loaded lm-eval tasks as they would run: each group's and leaf task's
    resolved config (few-shot included), the source of the modules its functions live in, the evaluated documents after ``limit`` (lm-eval's
    own selection) and, for few-shot tasks, the documents few-shot examples come from."""
    from lm_eval.evaluator_utils import get_sample_size

    h = hashlib.sha256()
    for kind, obj in _leaves(objects):
        if kind == "group":
            h.update(f"group:{canonical_json(obj.to_dict())}\n".encode())
            continue
        h.update(f"task:{canonical_json(_task_config(obj))}\n".encode())
        h.update(f"code:{canonical_json(_task_code(obj))}\n".encode())
        n = _hash_docs(h, (doc for _, doc in
                           obj.doc_iterator(limit=get_sample_size(obj, limit))))
        h.update(f"docs:{n}\n".encode())
        if obj.get_config("num_fewshot"):
            shots = obj.fewshot_docs()
            h.update(f"fewshot:{_hash_docs(h, shots if shots is not None else [])}\n".encode())
    return h.hexdigest()[:DIGEST_CHARS]


def task_version(objects: Iterable[Any]) -> str | None:
    """The version lm-eval reports for loaded tasks (``metadata.version``; a group's own
    and, where they differ from it, its leaf tasks' in brackets), or None when none is set.

    Task authors bump it when a prompt or data set changes what a score means (lm-eval's
    convention, and the tiny twins'), so a baseline pinned under another version measured
    another test. The content fingerprint is not used for this: it also changes with
    lm-eval's config layout and code, which would invalidate baselines on every upgrade."""
    from lm_eval.api.group import Group

    objects = list(objects)
    own = [str(v) for v in (o.version if isinstance(o, Group) else o.VERSION for o in objects)
           if v is not None]
    leaves = {str(t.VERSION) for kind, t in _leaves(objects)
              if kind == "task" and t.VERSION is not None}
    extra = sorted(leaves - set(own))
    if not own and not extra:
        return None
    return ", ".join(own) + (f" [{', '.join(extra)}]" if extra else "")
