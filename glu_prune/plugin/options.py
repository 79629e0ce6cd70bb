"""Every ``--glu-*`` option, each declared and parsed by one field of ``Options``:

    limit: int | None = option("--glu-limit", checks.int_at_least(1), "help ... (default: none)",
                               type=int)

names the pytest option, its help (ending with its default), argparse's type and the
parser that checks the raw value and returns the field's value (``glu_prune.plugin.checks``).
``add_options`` declares them all (one group, field order); ``Options.read`` parses them
once per process, in ``pytest_configure`` (controller and xdist workers alike), and the
rest of the plugin reads only the resulting object. Adding an option is adding a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pytest

from glu_prune.core.calibration_data import (CALIBRATION_FLAGS, CalibrationSettings,
                                              calibration_overrides, settings_for)
from glu_prune.core.importance import known_methods
from glu_prune.core.loading import MODELS_DIR_ENV
from glu_prune.core.placement import Placement
from glu_prune.evaluation import EvalSettings
from glu_prune.judging import UPDATE_FLAG, Tolerance
from glu_prune.plugin import checks
from glu_prune.plugin.checks import BadOption, calib_option, parse_list, parse_ppl_tol
from glu_prune.plugin.option_spec import (Parsing, Spec, all_specs, declared_fields, option,
                                          options, switch)
from glu_prune.plugin.placement import placement_field
from glu_prune.plugin.shape_options import ShapeChoice, shape_field
from glu_prune.plugin.unmeasured import REQUIRE_FLAG

__all__ = ["PERF_TOLERANCE", "BadOption", "Options", "add_options", "parse_list",
           "parse_ppl_tol"]

PERF_TOLERANCE = 0.10  # --glu-perf-tolerance's default


def _calibration() -> Any:
    """The --glu-calib-* options, declared once with the CLI's --calib-* (CALIBRATION_FLAGS,
    which also checks them): the values given, by CalibrationSettings field."""
    specs = tuple(Spec(calib_option(f), f.help, type=None if f.minimum is None else int)
                  for f in CALIBRATION_FLAGS)
    return options(specs, lambda p: calibration_overrides(lambda f: p.raw(calib_option(f)),
                                                          calib_option))


@dataclass(frozen=True)
class Options:
    """Every ``--glu-*`` value, parsed and checked once (``Options.read``)."""

    # ---------------------------------------------------------------- what to run
    models: list[str] | None = option(  # None when not given (quality: all; perf: defaults)
        "--glu-models", checks.models,
        "comma list of registered models to run (default: all registered models)")
    own_models: list[str] = option(
        "--glu-model", checks.sources,
        "a model of your own: a local folder (config.json, weights optional) or a hub id; "
        "repeatable; its name in test ids is the folder's or id's last part, lower-cased "
        "(default: none)", action="append", metavar="SRC")
    file_models: list[str] = option(
        "--glu-models-file", checks.models_file,
        "TOML file of kept models, [models.<name>] with source, levels, benchmarks, "
        "instruct; also the glu_models_file ini key (default: none)", metavar="TOML",
        ini="glu_models_file", ini_help="TOML file of kept models (as --glu-models-file), "
                                        "relative to the rootdir")
    methods: list[str] = option(
        "--glu-methods", checks.methods,
        f"comma list of importance methods: {', '.join(known_methods())}; act, wanda_sp, "
        f"flap and maw_hybrid score by activations on calibration data, see --glu-calib-* "
        f"(default: maw)", default="maw")
    shapes: ShapeChoice = shape_field()  # --glu-shapes, --glu-depth-methods
    levels: list[float] | None = option(
        "--glu-levels", checks.levels,
        "comma list of pruning percentages (default: each model's levels)")
    round_tos: list[int] = option(
        "--glu-round-to", checks.int_list(1, empty=[1]),
        "comma list of kept-size roundings, e.g. 1,128 (default: 1)", default="1")
    require_weights: bool = switch(
        "--glu-require-weights",
        "fail, instead of skip, when a model's weights cannot be had (default: off)")
    require_baselines: bool = switch(
        REQUIRE_FLAG,
        "fail, instead of skip, every test that measures nothing for want of a baseline or "
        "of weights, quality and speed (nightly CI) (default: off)")
    models_dir: str | None = option(
        "--glu-models-dir", checks.models_dir,
        f"folder holding <model-name>/ saved models; also ${MODELS_DIR_ENV} "
        f"(default: hub ids)")
    device: str | None = option(
        "--glu-device", checks.device,
        "torch device for the suite (default: cuda when available, else cpu)")
    # --glu-calib-* given, as CalibrationSettings fields; the rest are each model's defaults
    calibration: dict[str, Any] = _calibration()

    # ---------------------------------------------------------------- evaluation
    limit: int | None = option(
        "--glu-limit", checks.int_at_least(1),
        "lm-eval limit: examples per task, for quick runs; recorded and compared with the "
        "baseline's (default: none, full test sets)", type=int)
    batch_size: int = option(
        "--glu-batch-size", checks.int_at_least(1),
        f"lm-eval batch size; changes scores slightly, so it is fixed and recorded "
        f"(default: {EvalSettings.batch_size})", type=int, default=EvalSettings.batch_size)
    chat_template: bool = switch(
        "--glu-chat-template",
        "apply the tokenizer's chat template (instruct models) (default: off, as the "
        "published runs)")
    update_baselines: bool = switch(
        UPDATE_FLAG,
        "rewrite the baseline values measured in this run and fail those tests, so a person "
        "reviews the diff (default: off)")
    z: float = option(
        "--glu-z", checks.finite_at_least(0.0),
        f"z of the accuracy bound max(abs_floor, z*sqrt(se_b^2+se_r^2)) "
        f"(default: {Tolerance.z})", type=float, default=Tolerance.z)
    tolerance: Tolerance = option(  # --glu-z with the perplexity tolerances
        "--glu-ppl-tol", checks.ppl_tolerance,
        f"relative perplexity tolerance: one number, or name=value pairs like "
        f"'wikitext=0.05,lambada_openai=0.1' (default: {Tolerance.ppl_rel}, "
        f"lambada_openai 0.1)")
    cache_dir: Path = option(
        "--glu-cache-dir", checks.cache_dir,
        "result cache folder; runs resume from it (default: <rootdir>/.glu_cache)")
    baselines_dir: Path = option(
        "--glu-baselines-dir", checks.baselines_dir,
        "folder of <model>.json baselines (default: <rootdir>/baselines)")

    # ---------------------------------------------------------------- latency and energy
    prompt_lens: list[int] | None = option(
        "--glu-prompt-lens", checks.int_list(1),
        "comma list of TTFT prompt lengths (default: 128,512,2048 on GPU, 128 on CPU)")
    new_tokens: int | None = option(
        "--glu-new-tokens", checks.int_at_least(2),  # TPOT divides by new tokens - 1
        "tokens generated per TPOT/throughput call, EOS ignored (default: 64 on GPU, 4 on "
        "CPU)", type=int)
    perf_rounds: int | None = option(
        "--glu-perf-rounds", checks.int_at_least(1),
        "timed rounds per latency benchmark, after warm-up rounds (default: 10 after 2 on "
        "GPU, 9 after 1 on CPU; a speedup's 95-percent interval needs 6 or more)", type=int)
    perf_layers: int | None = option(
        "--glu-perf-layers", checks.int_at_least(1),
        "decoder layers of real model shapes in latency/energy runs (default: all on GPU, "
        "2 on CPU; tiny-llama always whole)", type=int)
    perf_dtype: str | None = option(
        "--glu-perf-dtype", checks.dtype,
        "dtype of latency/energy runs (default: bfloat16 on GPU, float32 on CPU)")
    perf_tolerance: float = option(
        "--glu-perf-tolerance", checks.finite_at_least(0.0),
        f"relative regression allowed against this device's perf baseline "
        f"(default: {PERF_TOLERANCE:g})", type=float, default=PERF_TOLERANCE)
    device_name: str | None = option(
        "--glu-device-name", checks.device_name,
        "device name keying baselines/perf/<slug>.json (default: the detected GPU or CPU "
        "model name)")
    # --glu-device-map, --glu-max-memory, --glu-offload-folder: where every variant runs,
    # for quality and speed alike (None: one device)
    placement: Placement | None = placement_field()
    stream: bool = switch(
        "--glu-stream",
        "build each width variant of a model folder by streaming, one layer in memory at a "
        "time, into <--glu-cache-dir>/stream, then load it (placed with --glu-device-map): "
        "the unpruned model is never held whole (default: off, built in memory)")

    @property
    def stream_dir(self) -> str | None:
        """Where streamed variants are written (None: variants are built in memory)."""
        return str(Path(self.cache_dir) / "stream") if self.stream else None

    # ---------------------------------------------------------------- results
    report_dir: Path = option(
        "--glu-report", checks.report_dir,
        "folder for results.json and results.md, written when a test recorded numbers; "
        "locked while a run uses it (default: results)", default="results", metavar="DIR")
    plots: bool = option(
        "--glu-plots", checks.plots,
        "also write PNG charts into the --glu-report folder; needs matplotlib, the [plots] "
        "extra (default: off)", default=False, action="store_true")

    # ---------------------------------------------------------------- not options
    verbose: int = 0  # pytest's -v count
    raw: dict[str, Any] = field(default_factory=dict)  # the glu_* values as given

    def calibration_for(self, model: str) -> CalibrationSettings:
        """The calibration settings of ``model``'s data-driven variants."""
        return settings_for(model, **self.calibration)

    @classmethod
    def read(cls, config: pytest.Config) -> Options:
        """Parse and check ``config``'s options; ``pytest.UsageError`` (one line) on a bad one."""
        try:
            return cls.parse(given(config), Path(config.rootpath),
                             Path(config.invocation_params.dir), vars(config.option))
        except ValueError as exc:  # BadOption, or a ValueError whose message names the option
            raise pytest.UsageError(f"glu-prune: {exc}") from None

    @classmethod
    def parse(cls, values: Mapping[str, Any], rootdir: Path, cwd: Path,
              option: Mapping[str, Any] | None = None) -> Options:
        """The options of raw ``values`` (option name -> value as pytest hands it over; an
        absent name takes its declared default); ``option``: pytest's ``config.option``."""
        values = {**{s.flag: s.default for s in all_specs(cls)}, **values}
        option = dict(option or {})
        parsed = Parsing(declared_fields(cls), values, rootdir, cwd).all()
        return cls(**parsed, verbose=option.get("verbose", 0) or 0,
                   raw={k: v for k, v in sorted(option.items()) if k.startswith("glu_")})


def add_options(parser: pytest.Parser) -> None:
    """Every ``--glu-*`` option in one group, in ``Options``' field order (each help ends
    with its default), and their ini keys."""
    group = parser.getgroup("glu-prune", "GLU width pruning suite")
    for spec in all_specs(Options):
        if spec.ini:
            parser.addini(spec.ini, spec.ini_help, default=None)
        spec.declare(group)


def given(config: pytest.Config) -> dict[str, Any]:
    """Each option's raw value in ``config``, read once; an unset option with an ini key
    takes the key's path (relative to the rootdir)."""
    values = {}
    for spec in all_specs(Options):
        value = config.getoption(spec.flag)
        if value is None and spec.ini and config.getini(spec.ini):
            value = str(Path(config.rootpath, config.getini(spec.ini)))
        values[spec.flag] = value
    return values
