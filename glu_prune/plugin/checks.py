"""One up-front check of every ``--glu-*`` option, so a bad value stops the run before any
model is loaded (pytest exit 4, one line naming the option, the value and what is valid),
and the parsers of the comma-list options.

The checks read raw option values (``config.getoption``) even where ``Options`` parses
them later: a value that would fail, or silently do nothing, must fail here first.
"""

from __future__ import annotations

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
from glu_prune.core.calibration_data import CalibrationFlag, calibration_overrides
from glu_prune.core.importance import known_methods
from glu_prune.core.loading import MODELS_DIR_ENV
from glu_prune.judging import DeviceInfo, Tolerance
from glu_prune.plugin.shape_options import check_shape_options

Get = Callable[[str], Any]  # option name -> value (None: not given)

# Options with nothing to check (on/off flags); listed so a test can prove every --glu-*
# option is either checked below or deliberately free.
FLAGS: tuple[str, ...] = ("--glu-require-weights", "--glu-chat-template",
                          "--glu-update-baselines", "--glu-require-baselines")


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


def check_options(get: Get, rootdir: Path, cwd: Path) -> list[str]:
    """Raise ``ValueError`` (mostly ``BadOption``) for the first bad value, its message
    naming the option; ``get`` returns ``None`` for an option that is unset. Registers the
    user's models and returns their names."""
    user = check_sources(get, cwd)
    models = check_models(get("--glu-models"), user)
    check_methods(get("--glu-methods"))
    check_shape_options(get)
    check_calibration(get)
    check_levels(get("--glu-levels"), models)
    _int_list("--glu-round-to", get("--glu-round-to"), 1)
    check_device(get("--glu-device"))
    check_models_dir(get("--glu-models-dir"), cwd)
    _int_at_least("--glu-limit", get("--glu-limit"), 1)
    _int_at_least("--glu-batch-size", get("--glu-batch-size"), 1)
    _finite_at_least("--glu-z", get("--glu-z"), 0.0)
    check_ppl_tol(get("--glu-ppl-tol"))
    check_folders(get, rootdir, cwd)
    _int_list("--glu-prompt-lens", get("--glu-prompt-lens"), 1)
    # TPOT divides the decode time by new tokens - 1
    _int_at_least("--glu-new-tokens", get("--glu-new-tokens"), 2)
    _int_at_least("--glu-perf-rounds", get("--glu-perf-rounds"), 1)
    _int_at_least("--glu-perf-layers", get("--glu-perf-layers"), 1)
    check_dtype(get("--glu-perf-dtype"))
    _finite_at_least("--glu-perf-tolerance", get("--glu-perf-tolerance"), 0.0)
    check_device_name(get("--glu-device-name"))
    check_plots(get("--glu-plots"))
    return user


# ---------------------------------------------------------------- what to run


def _items(text: Any) -> list[str]:
    """A comma list's entries (an empty option means 'not given', as ``parse_list``)."""
    return parse_list(text) or []


def check_models(text: str | None, user: list[str] | None = None) -> list[str]:
    """The selected model names: ``--glu-models`` plus the user's models (all registered
    when neither is given); unknown names are errors."""
    names = _items(text)
    for name in names:
        if name not in MODELS:
            raise BadOption("--glu-models", text, f"registered models {', '.join(MODELS)}",
                            f"unknown model {name!r}")
    return selected_models(names, user or []) or list(MODELS)


def selected_models(names: list[str], user: list[str]) -> list[str]:
    """``--glu-models``' names then the user's models, each once."""
    return list(dict.fromkeys([*names, *user]))


def check_sources(get: Get, cwd: Path) -> list[str]:
    """Check and register every user model (``--glu-model``, the models file): one line
    (``BadSource``) for a missing folder, no config.json, an unsupported family, corrupt
    weights or a hub id while offline. Returns their names."""
    specs = [spec_from_source(src, cwd) for src in get("--glu-model") or []]
    path = get("--glu-models-file")
    if path:
        specs += models_file_specs(Path(cwd, path))
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


def check_methods(text: str | None) -> None:
    """Every entry is a registered importance method (weight-only or calibration-based)."""
    for name in _items(text):
        if name not in known_methods():
            raise BadOption("--glu-methods", text, f"methods {', '.join(known_methods())}",
                            f"unknown method {name!r}")


def calib_option(flag: CalibrationFlag) -> str:
    """The plugin's spelling of a calibration option: ``--glu-calib-<name>``."""
    return f"--glu-calib-{flag.name}"


def check_calibration(get: Get) -> None:
    """The calibration data of data-driven methods: a known source and sane sizes (the
    checks of ``CALIBRATION_FLAGS``, shared with the CLI)."""
    calibration_overrides(lambda f: get(calib_option(f)), calib_option)


def check_levels(text: str | None, models: list[str]) -> None:
    """Percentages in [0, 100) that at least one selected model registers."""
    known = sorted({lv for m in models for lv in MODELS[m].levels})
    valid = f"levels registered for {', '.join(models)}: {', '.join(map(str, known))}"
    for item in _items(text):
        try:
            level = float(item)
        except ValueError:
            raise BadOption("--glu-levels", text, valid, f"{item!r} is not a number") from None
        if level not in known:
            raise BadOption("--glu-levels", text, valid, f"level {item} is not registered")


def check_device(text: str | None) -> None:
    """A torch device string; a CUDA device must exist here."""
    if text is None:
        return
    valid = "a torch device such as cpu, cuda or cuda:1"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise BadOption("--glu-device", text, valid, "not a torch device") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise BadOption("--glu-device", text, valid, f"this machine has {count} CUDA "
                            f"device(s) visible")


def check_models_dir(text: str | None, cwd: Path) -> None:
    """``--glu-models-dir`` (else ``$GLU_PRUNE_MODELS_DIR``) names an existing folder."""
    name, value = ("--glu-models-dir", text) if text else (MODELS_DIR_ENV,
                                                          os.environ.get(MODELS_DIR_ENV))
    if value and not (cwd / value).is_dir():
        what = "is a file" if (cwd / value).exists() else "does not exist"
        raise BadOption(name, value, "an existing folder holding <model-name>/ saved models",
                        what)


# ---------------------------------------------------------------- judging


def check_ppl_tol(text: str | None) -> None:
    """Parsed by the suite's own parser (its errors name the option and the bad part), then
    by ``Tolerance``."""
    try:
        kwargs = parse_ppl_tol(text)
    except pytest.UsageError as exc:  # its message names the option, the part and the fix
        raise ValueError(str(exc)) from None
    try:
        Tolerance(**kwargs)
    except ValueError as exc:
        raise BadOption("--glu-ppl-tol", text, "finite numbers >= 0", str(exc)) from None


def check_folders(get: Get, rootdir: Path, cwd: Path) -> None:
    """Folders written during the run are writable now, not after an hour of evaluation."""
    if get("--glu-cache-dir") is not None:
        _writable_dir("--glu-cache-dir", get("--glu-cache-dir"), cwd)
    if get("--glu-report") is not None:
        _writable_dir("--glu-report", get("--glu-report"), cwd)
    baselines = get("--glu-baselines-dir")
    if get("--glu-update-baselines"):
        _writable_dir("--glu-baselines-dir", baselines or rootdir / "baselines", cwd)
    elif baselines is not None and (cwd / baselines).exists() and not (cwd / baselines).is_dir():
        # an absent folder is a first run (tests skip, naming it); a file is a mistake
        raise BadOption("--glu-baselines-dir", baselines, "a folder of <model>.json baselines",
                        "a file, not a folder")


def _writable_dir(option: str, value: Any, cwd: Path) -> None:
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


def check_dtype(text: str | None) -> None:
    """A floating-point torch dtype name."""
    if text is None:
        return
    if not (isinstance(getattr(torch, text, None), torch.dtype)
            and getattr(torch, text).is_floating_point):
        raise BadOption("--glu-perf-dtype", text, "a torch floating dtype name such as "
                        "bfloat16, float16 or float32")


def check_device_name(text: str | None) -> None:
    """A name that keys a baseline file: it must keep some letters or digits."""
    if text is not None and not DeviceInfo(text, "", "").slug:
        raise BadOption("--glu-device-name", repr(text), "a name with letters or digits, "
                        "e.g. 'nvidia-h100-80gb'")


def check_plots(enabled: bool | None) -> None:
    """``--glu-plots`` needs matplotlib (the [plots] extra) before the run, not after it."""
    if not enabled:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadOption("--glu-plots", None, "install matplotlib: pip install -e "
                        "'.[plots]' in a checkout, or pip install matplotlib",
                        "matplotlib is not installed") from None


# ---------------------------------------------------------------- numbers


def _int_at_least(option: str, value: Any, low: int) -> None:
    """``value`` (argparse already made it an int) is unset or >= ``low``."""
    if value is not None and value < low:
        raise BadOption(option, value, f"an integer >= {low}")


def _int_list(option: str, text: Any, low: int) -> None:
    """Every entry of a comma list is an integer >= ``low``."""
    for item in _items(text):
        try:
            problem = f"{item} is below {low}" if int(item) < low else ""
        except ValueError:
            problem = f"{item!r} is not an integer"
        if problem:
            raise BadOption(option, text, f"a comma list of integers >= {low}", problem)


def _finite_at_least(option: str, value: Any, low: float) -> None:
    """``value`` (a float from argparse) is unset, finite and >= ``low``."""
    if value is not None and not (math.isfinite(value) and value >= low):
        raise BadOption(option, value, f"a finite number >= {low:g}")
