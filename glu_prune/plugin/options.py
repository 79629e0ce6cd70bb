"""Every ``--glu-*`` option: declared here (``add_options``, one group, each help ending
with its default), checked up front (``glu_prune.plugin.checks``) and read once into
``Options`` (``Options.read``, in ``pytest_configure``).

Only the plugin's glue reads options; everything else gets values or objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from glu_prune.core.calibration_data import (CALIBRATION_FLAGS, CalibrationSettings,
                                              calibration_overrides, settings_for)
from glu_prune.core.importance import known_methods
from glu_prune.core.loading import MODELS_DIR_ENV
from glu_prune.evaluation import EvalSettings
from glu_prune.judging import UPDATE_FLAG, Tolerance
from glu_prune.plugin.checks import (FLAGS, BadOption, Get, calib_option, check_options,
                                     parse_list, parse_ppl_tol, selected_models)
from glu_prune.plugin.shape_options import add_shape_options
from glu_prune.plugin.unmeasured import REQUIRE_FLAG

__all__ = ["FLAGS", "PERF_TOLERANCE", "BadOption", "Options", "add_options", "check_options",
           "parse_list", "parse_ppl_tol"]

PERF_TOLERANCE = 0.10  # --glu-perf-tolerance's default


def add_options(parser: pytest.Parser) -> None:
    """All 33 ``--glu-*`` options, in one group (each help ends with its default), and the
    ini key of the kept models file."""
    add_ini(parser)
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    _what_to_run(group)
    _calibration(group)
    _evaluation(group)
    _latency_and_energy(group)
    group.addoption("--glu-report", default="results", metavar="DIR",
                    help="folder for results.json and results.md, written when a test "
                         "recorded numbers; locked while a run uses it (default: results)")
    group.addoption("--glu-plots", action="store_true", default=False,
                    help="also write PNG charts into the --glu-report folder; needs "
                         "matplotlib, the [plots] extra (default: off)")


def _what_to_run(group: Any) -> None:
    group.addoption("--glu-models", default=None,
                    help="comma list of registered models to run "
                         "(default: all registered models)")
    group.addoption("--glu-model", action="append", default=None, metavar="SRC",
                    help="a model of your own: a local folder (config.json, weights optional) "
                         "or a hub id; repeatable; its name in test ids is the folder's or "
                         "id's last part, lower-cased (default: none)")
    group.addoption("--glu-models-file", default=None, metavar="TOML",
                    help="TOML file of kept models, [models.<name>] with source, levels, "
                         "benchmarks, instruct; also the glu_models_file ini key (default: none)")
    group.addoption("--glu-methods", default="maw",
                    help=f"comma list of importance methods: {', '.join(known_methods())}; "
                         f"act, wanda_sp, flap and maw_hybrid score by activations on "
                         f"calibration data, see --glu-calib-* (default: maw)")
    add_shape_options(group)
    group.addoption("--glu-levels", default=None,
                    help="comma list of pruning percentages (default: each model's levels)")
    group.addoption("--glu-round-to", default="1",
                    help="comma list of kept-size roundings, e.g. 1,128 (default: 1)")
    group.addoption("--glu-require-weights", action="store_true", default=False,
                    help="fail, instead of skip, when a model's weights cannot be had "
                         "(default: off)")
    group.addoption(REQUIRE_FLAG, action="store_true", default=False,
                    help="fail, instead of skip, every test that measures nothing for want "
                         "of a baseline or of weights, quality and speed (nightly CI) "
                         "(default: off)")
    group.addoption("--glu-models-dir", default=None,
                    help=f"folder holding <model-name>/ saved models; also ${MODELS_DIR_ENV} "
                         f"(default: hub ids)")
    group.addoption("--glu-device", default=None,
                    help="torch device for the suite (default: cuda when available, else cpu)")


def _calibration(group: Any) -> None:
    for flag in CALIBRATION_FLAGS:  # declared once, shared with the CLI's --calib-*
        group.addoption(calib_option(flag), default=None, help=flag.help,
                        type=None if flag.minimum is None else int)


def _evaluation(group: Any) -> None:
    group.addoption("--glu-limit", type=int, default=None,
                    help="lm-eval limit: examples per task, for quick runs; recorded and "
                         "compared with the baseline's (default: none, full test sets)")
    group.addoption("--glu-batch-size", type=int, default=EvalSettings.batch_size,
                    help=f"lm-eval batch size; changes scores slightly, so it is fixed and "
                         f"recorded (default: {EvalSettings.batch_size})")
    group.addoption("--glu-chat-template", action="store_true", default=False,
                    help="apply the tokenizer's chat template (instruct models) "
                         "(default: off, as the published runs)")
    group.addoption(UPDATE_FLAG, action="store_true", default=False,
                    help="rewrite the baseline values measured in this run and fail those "
                         "tests, so a person reviews the diff (default: off)")
    group.addoption("--glu-z", type=float, default=Tolerance.z,
                    help=f"z of the accuracy bound max(abs_floor, z*sqrt(se_b^2+se_r^2)) "
                         f"(default: {Tolerance.z})")
    group.addoption("--glu-ppl-tol", default=None,
                    help="relative perplexity tolerance: one number, or name=value pairs "
                         "like 'wikitext=0.05,lambada_openai=0.1' "
                         f"(default: {Tolerance.ppl_rel}, lambada_openai 0.1)")
    group.addoption("--glu-cache-dir", default=None,
                    help="result cache folder; runs resume from it (default: <rootdir>/.glu_cache)")
    group.addoption("--glu-baselines-dir", default=None,
                    help="folder of <model>.json baselines (default: <rootdir>/baselines)")


def _latency_and_energy(group: Any) -> None:
    group.addoption("--glu-prompt-lens", default=None,
                    help="comma list of TTFT prompt lengths (default: 128,512,2048 on GPU, "
                         "128 on CPU)")
    group.addoption("--glu-new-tokens", type=int, default=None,
                    help="tokens generated per TPOT/throughput call, EOS ignored "
                         "(default: 64 on GPU, 4 on CPU)")
    group.addoption("--glu-perf-rounds", type=int, default=None,
                    help="timed rounds per latency benchmark, after warm-up rounds "
                         "(default: 10 after 2 on GPU, 9 after 1 on CPU; a speedup's 95-percent "
                         "interval needs 6 or more)")
    group.addoption("--glu-perf-layers", type=int, default=None,
                    help="decoder layers of real model shapes in latency/energy runs "
                         "(default: all on GPU, 2 on CPU; tiny-llama always whole)")
    group.addoption("--glu-perf-dtype", default=None,
                    help="dtype of latency/energy runs (default: bfloat16 on GPU, float32 on CPU)")
    group.addoption("--glu-perf-tolerance", type=float, default=PERF_TOLERANCE,
                    help="relative regression allowed against this device's perf baseline "
                         f"(default: {PERF_TOLERANCE:g})")
    group.addoption("--glu-device-name", default=None,
                    help="device name keying baselines/perf/<slug>.json "
                         "(default: the detected GPU or CPU model name)")


@dataclass(frozen=True)
class Options:
    """Every ``--glu-*`` value, read once (in ``pytest_configure``) and checked."""

    models: list[str] | None  # None when not given (quality: all; perf: its defaults)
    methods: list[str]
    levels: list[float] | None
    round_tos: list[int]
    require_weights: bool
    require_baselines: bool
    models_dir: str | None
    device: str | None
    limit: int | None
    batch_size: int
    chat_template: bool
    update_baselines: bool
    tolerance: Tolerance
    cache_dir: Path
    baselines_dir: Path
    prompt_lens: list[int] | None
    new_tokens: int | None
    perf_rounds: int | None
    perf_layers: int | None
    perf_dtype: str | None
    perf_tolerance: float
    device_name: str | None
    report_dir: Path
    plots: bool
    verbose: int
    raw: dict[str, Any]  # the glu_* values as given (results.json's "options")
    # --glu-calib-* given, as CalibrationSettings fields; the rest are each model's defaults
    calibration: dict[str, Any] = field(default_factory=dict)

    def calibration_for(self, model: str) -> CalibrationSettings:
        """The calibration settings of ``model``'s data-driven variants."""
        return settings_for(model, **self.calibration)

    @classmethod
    def read(cls, config: pytest.Config) -> Options:
        """Check and read ``config``'s options; ``pytest.UsageError`` (one line) on a bad one."""
        root, cwd = Path(config.rootpath), Path(config.invocation_params.dir)
        get = _with_ini(config)
        try:
            user = check_options(get, root, cwd)
            return cls.parse(get, root, cwd, vars(config.option), user)
        except ValueError as exc:  # BadOption, or a ValueError whose message names the option
            raise pytest.UsageError(f"glu-prune: {exc}") from None

    @classmethod
    def parse(cls, get: Get, root: Path, cwd: Path, option: dict[str, Any],
              user: list[str] | None = None) -> Options:
        """The values of checked options (``get`` as ``config.getoption``); ``user``: the
        user's registered models (``--glu-model``, the models file)."""
        return cls(
            models=selected_models(parse_list(get("--glu-models")) or [], user or []) or None,
            methods=parse_list(get("--glu-methods")) or ["maw"],
            levels=parse_list(get("--glu-levels"), float),
            round_tos=parse_list(get("--glu-round-to"), int) or [1],
            require_weights=bool(get("--glu-require-weights")),
            require_baselines=bool(get(REQUIRE_FLAG)),
            models_dir=get("--glu-models-dir"), device=get("--glu-device"),
            limit=get("--glu-limit"), batch_size=get("--glu-batch-size"),
            chat_template=bool(get("--glu-chat-template")),
            update_baselines=bool(get(UPDATE_FLAG)),
            tolerance=Tolerance(z=get("--glu-z"), **parse_ppl_tol(get("--glu-ppl-tol"))),
            cache_dir=Path(get("--glu-cache-dir") or root / ".glu_cache"),
            baselines_dir=Path(get("--glu-baselines-dir") or root / "baselines"),
            prompt_lens=parse_list(get("--glu-prompt-lens"), int),
            new_tokens=get("--glu-new-tokens"), perf_rounds=get("--glu-perf-rounds"),
            perf_layers=get("--glu-perf-layers"), perf_dtype=get("--glu-perf-dtype"),
            perf_tolerance=get("--glu-perf-tolerance"), device_name=get("--glu-device-name"),
            report_dir=Path(cwd, get("--glu-report")), plots=bool(get("--glu-plots")),
            verbose=option.get("verbose", 0) or 0,
            raw={k: v for k, v in sorted(option.items()) if k.startswith("glu_")},
            calibration=_calibration_overrides(get))


def add_ini(parser: pytest.Parser) -> None:
    """The ini keys: a kept models file (pytest.ini or [tool.pytest.ini_options])."""
    parser.addini("glu_models_file", "TOML file of kept models (as --glu-models-file), "
                  "relative to the rootdir", default=None)


def _with_ini(config: pytest.Config) -> Get:
    """``config.getoption``, with ``--glu-models-file`` falling back to its ini key."""
    ini = config.getini("glu_models_file")

    def get(name: str) -> Any:
        value = config.getoption(name)
        if name == "--glu-models-file" and value is None and ini:
            return str(Path(config.rootpath, ini))
        return value
    return get


def _calibration_overrides(get: Get) -> dict[str, Any]:
    """The --glu-calib-* values given, by CalibrationSettings field."""
    return calibration_overrides(lambda f: get(calib_option(f)), calib_option)
