"""The parsers of the ``--glu-*`` options: each takes one option's raw value (as pytest
hands it over), checks it and returns the value ``Options`` holds, or raises
``BadOption`` (a ``ValueError``) whose one line names the option, the value and what is
valid. ``Options.read`` runs each once, in ``pytest_configure``, before any model is
loaded (pytest exit 4).

A parser's signature is ``(option name, raw value, Parsing)``; ``Parsing.value`` gives a
parser another field's parsed value (the levels need the selected models).
"""

from __future__ import annotations

import importlib
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from glu_prune.catalog.benchmarks import BENCHMARK_SETS
from glu_prune.catalog.models import MODELS
from glu_prune.catalog.sources import BadSource, register, spec_from_source
from glu_prune.catalog.tasks import register_task_set
from glu_prune.core.calibration_data import CalibrationFlag
from glu_prune.core.importance import known_methods
from glu_prune.core.loading import MODELS_DIR_ENV
from glu_prune.judging import DeviceInfo, Tolerance
from glu_prune.plugin.option_spec import Parser, Parsing


def parse_list(text: str | None, cast: Callable[[str], Any] = str) -> list | None:
    """Split a comma list option (``None`` or empty = not given)."""
    if text is None or not str(text).strip():
        return None
    return [cast(x.strip()) for x in str(text).split(",") if x.strip()]


def parse_ppl_tol(text: str | None) -> dict[str, Any]:
    """``--glu-ppl-tol`` as Tolerance keyword arguments: one number for every perplexity
    benchmark, or ``name=value`` pairs naming registered perplexity benchmarks.

    Raises ``pytest.UsageError`` naming the option, the bad part and what is valid: a NaN
    would turn the gate off and a misspelt name would be ignored, both silently.
    """
    def number(value: str) -> float:
        try:
            tol = float(value)
        except ValueError:
            tol = math.nan
        if not (math.isfinite(tol) and tol >= 0):
            raise pytest.UsageError(f"--glu-ppl-tol={text}: {value.strip()!r} is not a "
                                    f"tolerance; valid: a finite number >= 0, e.g. 0.05")
        return tol

    if not text:
        return {}
    if "=" not in text:
        return {"ppl_rel": number(text)}
    known = sorted({b.name for s in BENCHMARK_SETS.values() for b in s if b.has_perplexity})
    pairs: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        why = (f"expected name=value, got {part.strip()!r}" if not sep
               else f"{name!r} is not a perplexity benchmark" if name not in known
               else f"{name!r} is given twice" if name in pairs else "")
        if why:
            raise pytest.UsageError(f"--glu-ppl-tol={text}: {why}; valid: one number, or "
                                    f"name=value pairs with names {', '.join(known)}")
        pairs[name] = number(value)
    return {"ppl_rel_by_benchmark": {**Tolerance().ppl_rel_by_benchmark, **pairs}}


class BadOption(ValueError):
    """One bad option value; ``str()`` is the one-line message."""

    def __init__(self, option: str, value: Any, valid: str, problem: str = "") -> None:
        given = option if value is None else f"{option}={value}"  # flags carry no value
        why = f"{problem}; " if problem else ""
        super().__init__(f"{given}: {why}valid: {valid}")


# ---------------------------------------------------------------- what to run


def _items(text: Any) -> list[str]:
    """A comma list's entries (an empty option means 'not given', as ``parse_list``)."""
    return parse_list(text) or []


def models(flag: str, text: str | None, p: Parsing) -> list[str] | None:
    """The selected model names: ``--glu-models`` then the user's models (``None`` when
    neither is given: every registered model); unknown names are errors."""
    user = [*p.value("own_models"), *p.value("file_models")]  # registered first
    names = _items(text)
    for name in names:
        if name not in MODELS:
            raise BadOption(flag, text, f"registered models {', '.join(MODELS)}",
                            f"unknown model {name!r}")
    return selected_models(names, user) or None


def selected_models(names: list[str], user: list[str]) -> list[str]:
    """``--glu-models``' names then the user's models, each once."""
    return list(dict.fromkeys([*names, *user]))


def sources(flag: str, given: list[str] | None, p: Parsing) -> list[str]:
    """Check and register the user's models of ``--glu-model``: one line (``BadSource``)
    for a missing folder, no config.json, an unsupported family, corrupt weights or a hub
    id while offline. Returns their names."""
    specs = [spec_from_source(src, p.cwd) for src in given or []]
    return [register(spec).name for spec in specs]


def models_file(flag: str, path: str | None, p: Parsing) -> list[str]:
    """Check and register the models of a kept models file; returns their names."""
    specs = models_file_specs(Path(p.cwd, path)) if path else []
    return [register(spec).name for spec in specs]


def models_file_specs(path: Path) -> list[Any]:
    """The models of a TOML models file: ``[models.<name>]`` tables with ``source`` and
    optional ``levels``, ``benchmarks`` (a benchmark set) and ``instruct``."""
    try:
        tables = tomllib.loads(path.read_text()).get("models", {})
    except (OSError, ValueError) as exc:
        raise BadSource(f"--glu-models-file={path}: {exc}") from None
    specs = []
    for name, entry in tables.items():
        unknown = set(entry) - {"source", "levels", "methods", "benchmarks", "instruct"}
        if "source" not in entry or unknown:
            raise BadSource(f"--glu-models-file={path}: [models.{name}] needs source and may "
                            f"have levels, methods, benchmarks, instruct; got "
                            f"{', '.join(entry)}")
        extra: dict[str, Any] = {"name": name.lower(), "instruct": entry.get("instruct", False)}
        if "levels" in entry:
            extra["levels"] = tuple(entry["levels"])
        if "methods" in entry:
            extra["methods"] = _methods(entry["methods"], path, name)
        if "benchmarks" in entry:
            extra["benchmark_set"] = _benchmark_set(entry["benchmarks"], path, name)
        specs.append(spec_from_source(str(entry["source"]), path.parent, **extra))
    return specs


def _methods(value: Any, path: Path, name: str) -> tuple[str, ...]:
    """A model's own importance methods: a non-empty list of registered names."""
    names = value if isinstance(value, list) else [value]
    bad = [m for m in names if m not in known_methods()]
    if not names or bad:
        raise BadSource(f"--glu-models-file={path}: [models.{name}] methods {value!r}; valid: "
                        f"a list of {', '.join(known_methods())}")
    return tuple(str(m) for m in names)


def _benchmark_set(value: Any, path: Path, name: str) -> str:
    """A set name as it is, or a list of lm-eval tasks (``task`` or ``task:metric``)
    registered as the set ``<name> tasks``."""
    if isinstance(value, list):
        try:
            return register_task_set(f"{name.lower()} tasks", [str(v) for v in value])
        except ValueError as exc:
            raise BadSource(f"--glu-models-file={path}: [models.{name}] {exc}") from None
    if value not in BENCHMARK_SETS:
        raise BadSource(f"--glu-models-file={path}: [models.{name}] benchmarks {value!r}; "
                        f"valid: {', '.join(BENCHMARK_SETS)} or a list of lm-eval tasks")
    return str(value)


def methods(flag: str, text: str | None, p: Parsing | None = None) -> list[str]:
    """Registered importance methods (weight-only or calibration-based); default maw."""
    for name in _items(text):
        if name not in known_methods():
            raise BadOption(flag, text, f"methods {', '.join(known_methods())}",
                            f"unknown method {name!r}")
    return _items(text) or ["maw"]


def calib_option(flag: CalibrationFlag) -> str:
    """The plugin's spelling of a calibration option: ``--glu-calib-<name>``."""
    return f"--glu-calib-{flag.name}"


def levels(flag: str, text: str | None, p: Parsing) -> list[float] | None:
    """Percentages that at least one selected model registers (``None``: each model's)."""
    selected = p.value("models") or list(MODELS)
    known = sorted({lv for m in selected for lv in MODELS[m].levels})
    valid = f"levels registered for {', '.join(selected)}: {', '.join(map(str, known))}"
    for item in _items(text):
        try:
            level = float(item)
        except ValueError:
            raise BadOption(flag, text, valid, f"{item!r} is not a number") from None
        if level not in known:
            raise BadOption(flag, text, valid, f"level {item} is not registered")
    return parse_list(text, float)


def device(flag: str, text: str | None, p: Parsing) -> str | None:
    """A torch device string; a CUDA device must exist here (``None``: cuda when there is
    one, else cpu)."""
    if text is None:
        return None
    valid = "a torch device such as cpu, cuda or cuda:1"
    try:
        torch_device = torch.device(text)
    except (RuntimeError, ValueError):
        raise BadOption(flag, text, valid, "not a torch device") from None
    if torch_device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (torch_device.index or 0) >= count:
            raise BadOption(flag, text, valid, f"this machine has {count} CUDA "
                            f"device(s) visible")
    return text


def models_dir(flag: str, text: str | None, p: Parsing) -> str | None:
    """``--glu-models-dir`` (else ``$GLU_PRUNE_MODELS_DIR``) names an existing folder."""
    name, value = (flag, text) if text else (MODELS_DIR_ENV, os.environ.get(MODELS_DIR_ENV))
    if value and not (p.cwd / value).is_dir():
        what = "is a file" if (p.cwd / value).exists() else "does not exist"
        raise BadOption(name, value, "an existing folder holding <model-name>/ saved models",
                        what)
    return text


# ---------------------------------------------------------------- judging


def ppl_tolerance(flag: str, text: str | None, p: Parsing) -> Tolerance:
    """The judging tolerance: ``--glu-z`` with ``--glu-ppl-tol`` parsed by
    ``parse_ppl_tol`` (its errors name the option and the bad part), then by ``Tolerance``."""
    try:
        kwargs = parse_ppl_tol(text)
    except pytest.UsageError as exc:  # its message names the option, the part and the fix
        raise ValueError(str(exc)) from None
    try:
        return Tolerance(z=p.value("z"), **kwargs)
    except ValueError as exc:
        raise BadOption(flag, text, "finite numbers >= 0", str(exc)) from None


def cache_dir(flag: str, value: str | None, p: Parsing) -> Path:
    """The result cache folder, writable now (default: <rootdir>/.glu_cache)."""
    if value is not None:
        writable_dir(flag, value, p.cwd)
    return Path(value or p.rootdir / ".glu_cache")


def report_dir(flag: str, value: str, p: Parsing) -> Path:
    """The report folder, writable now, not after an hour of evaluation."""
    writable_dir(flag, value, p.cwd)
    return Path(p.cwd, value)


def baselines_dir(flag: str, value: str | None, p: Parsing) -> Path:
    """The baselines folder: writable when ``--glu-update-baselines`` writes it; else an
    absent folder is a first run (tests skip, naming it), but a file is a mistake."""
    if p.value("update_baselines"):
        writable_dir(flag, value or p.rootdir / "baselines", p.cwd)
    elif value is not None and (p.cwd / value).exists() and not (p.cwd / value).is_dir():
        raise BadOption(flag, value, "a folder of <model>.json baselines",
                        "a file, not a folder")
    return Path(value or p.rootdir / "baselines")


def writable_dir(option: str, value: Any, cwd: Path) -> None:
    """``value`` is a folder this user can write, or can be created as one."""
    valid = "a folder this user can write (created when absent)"
    path = cwd / value
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is)"
        raise BadOption(option, value, valid, f"a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadOption(option, value, valid, f"{existing} is not writable")


# ---------------------------------------------------------------- latency and energy


def dtype(flag: str, text: str | None, p: Parsing) -> str | None:
    """A floating-point torch dtype name (``None``: the device's default)."""
    if text is not None and not (isinstance(getattr(torch, text, None), torch.dtype)
                                 and getattr(torch, text).is_floating_point):
        raise BadOption(flag, text, "a torch floating dtype name such as "
                        "bfloat16, float16 or float32")
    return text


def device_name(flag: str, text: str | None, p: Parsing) -> str | None:
    """A name that keys a baseline file: it must keep some letters or digits."""
    if text is not None and not DeviceInfo(text, "", "").slug:
        raise BadOption(flag, repr(text), "a name with letters or digits, "
                        "e.g. 'nvidia-h100-80gb'")
    return text


def plots(flag: str, enabled: bool | None, p: Parsing) -> bool:
    """``--glu-plots`` needs matplotlib (the [plots] extra) before the run, not after it."""
    if not enabled:
        return False
    try:
        importlib.import_module("matplotlib")  # imported only to see that it can be
    except ImportError:
        raise BadOption(flag, None, "install matplotlib: pip install -e "
                        "'.[plots]' in a checkout, or pip install matplotlib",
                        "matplotlib is not installed") from None
    return True


# ---------------------------------------------------------------- numbers


def int_at_least(low: int) -> Parser:
    """A parser of an integer option (argparse made it an int): unset or >= ``low``."""
    def parse(flag: str, value: int | None, p: Parsing) -> int | None:
        if value is not None and value < low:
            raise BadOption(flag, value, f"an integer >= {low}")
        return value
    return parse


def int_list(low: int, empty: list[int] | None = None) -> Parser:
    """A parser of a comma list of integers >= ``low`` (``empty`` when not given)."""
    def parse(flag: str, text: str | None, p: Parsing) -> list[int] | None:
        for item in _items(text):
            try:
                problem = f"{item} is below {low}" if int(item) < low else ""
            except ValueError:
                problem = f"{item!r} is not an integer"
            if problem:
                raise BadOption(flag, text, f"a comma list of integers >= {low}", problem)
        return parse_list(text, int) or empty
    return parse


def finite_at_least(low: float) -> Parser:
    """A parser of a float option (argparse made it a float): unset, finite and >= ``low``."""
    def parse(flag: str, value: float | None, p: Parsing) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= low):
            raise BadOption(flag, value, f"a finite number >= {low:g}")
        return value
    return parse
