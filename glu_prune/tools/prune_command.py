"""``glu-prune prune``: width (in memory or streamed) and depth pruning of one model, saved
as a folder that plain ``from_pretrained`` loads, with its ``prune_report.json``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from glu_prune.catalog.models import get_model_spec
from glu_prune.console import quiet_libraries
from glu_prune.core.arithmetic import kept_count
from glu_prune.core.calibration import calibrate
from glu_prune.core.calibration_data import (CALIBRATION_FLAGS, CalibrationFlag,
                                              CalibrationSettings, calibration_batches,
                                              calibration_overrides, settings_for)
from glu_prune.core.depth import DATA_METHODS, LAYER_METHODS, prune_depth
from glu_prune.core.importance import known_methods, needs_calibration
from glu_prune.core.nonuniform import prune_global, prune_selective
from glu_prune.core.prune import PruneReport, prune_glu_mlp
from glu_prune.core.saving import check_out_dir, write_folder_atomically
from glu_prune.core.loading import load_tokenizer
from glu_prune.core.sources import Source, load_named, source_tokenizer, user_source
from glu_prune.core.streaming import DEFAULT_SHARD_SIZE, stream_prune


def check_prune_level(args: argparse.Namespace, width: int | None = None,
                      hidden: int | None = None) -> int:
    """The kept size that ``args`` ask for, from the architecture (a registered model's, or
    ``width``/``hidden`` of a source's config): a bad ``--pct``, ``--expansion-ratio`` or
    ``--round-to`` fails here, before any model loads."""
    if width is None:
        spec = get_model_spec(args.model)
        width, hidden = spec.intermediate_size, spec.hidden_size
    try:
        return kept_count(width, pct=args.pct, expansion_ratio=args.expansion_ratio,
                          hidden_size=hidden, round_to=args.round_to)
    except ValueError as exc:  # name the options, not the library's arguments
        raise ValueError(f"{args.model}: {as_options(str(exc))}") from None


def as_options(message: str, pct: str = "--pct") -> str:
    """A library message with its argument names spelt as this command's options
    (``round_to=8`` -> ``--round-to 8``); ``pct``: what a pct is called here."""
    names = {"expansion_ratio": "--expansion-ratio", "round_to": "--round-to", "pct": pct}

    def option(m: re.Match) -> str:
        return names[m[1]] + (" " if m[2] else "")
    return re.sub(r"\b(expansion_ratio|round_to|pct)\b(=)?", option, message)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a registered model (or a local directory) and save it with its report."""
    out = Path(args.out)
    check_out_dir(out, args.force)
    source = user_source(args.model, args.model_dir)
    if args.depth is not None or args.remove_layers is not None:
        return _cmd_prune_depth(args, out, source)
    args.method = args.method or "maw"  # a layer method here fails as an unknown scorer
    check_prune_level(args, *(source.shape() if source else ()))
    width_shape(args)  # shape options checked before the model loads
    if args.layers is not None:
        parse_layers(args.layers, "--layers")
    calibration = calibration_settings(args)  # checked before the model loads
    if args.stream:
        return _stream(args, out, source, calibration)
    with quiet_libraries(verbose=args.verbose):  # transformers' "Loading weights" bar
        name, model, tok = load_named(args.model, source, weights=args.weights,
                                      model_dir=args.model_dir, seed=args.seed)
    stats = None if calibration is None else calibrate(model, tok, calibration,
                                                      progress=args.verbose)
    report = _prune_width(args, model, stats)
    _save(args, out, model, tok, {"model": name, "weights": args.weights,
                                  "shape": width_shape(args), **report_fields(args, report)})
    after = (report.intermediate_size_after if report.layer_widths is None else
             f"{min(report.layer_widths)}..{max(report.layer_widths)} per layer "
             f"(load it with glu_prune.load_pruned)")
    sys.stdout.write(f"saved {name} pruned with {report.method}: intermediate "
                     f"{report.intermediate_size_before} -> {after}, "
                     f"{report.params_removed_pct:.2f}% of parameters removed -> {out}\n")
    return 0


def width_shape(args: argparse.Namespace) -> str:
    """``uniform``, ``selective`` (``--layers``) or ``global`` (``--global``); a shape's
    options given with another (or with options it cannot use) are an error."""
    shape = "global" if args.global_ else "selective" if args.layers is not None else "uniform"
    if args.global_ and args.layers is not None:
        raise ValueError("--global allocates over all layers; drop --layers (or --global)")
    if args.min_width is not None and shape != "global":
        raise ValueError("--min-width is the floor of --global allocation; add --global")
    if shape != "uniform" and (args.pct is None or args.stream):
        raise ValueError(f"--{'global' if args.global_ else 'layers'} takes --pct (not "
                         f"--expansion-ratio) and prunes in memory (not --stream)")
    return shape


def _prune_width(args: argparse.Namespace, model: Any, stats: Any) -> PruneReport:
    """Prune ``model`` in the shape ``args`` ask for (validated by :func:`width_shape`)."""
    common = {"method": args.method, "round_to": args.round_to, "seed": args.seed,
              "stats": stats}
    if args.global_:
        return prune_global(model, pct=args.pct, min_width=args.min_width, **common)
    if args.layers is not None:
        return prune_selective(model, pct=args.pct,
                               layers=parse_layers(args.layers, "--layers"), **common)
    return prune_glu_mlp(model, pct=args.pct, expansion_ratio=args.expansion_ratio, **common)


def _save(args: argparse.Namespace, out: Path, model: Any, tok: Any,
          report: dict[str, Any]) -> None:
    """Write the model, its tokenizer and ``prune_report.json`` to ``out`` atomically."""
    def write(folder: Path) -> None:
        model.save_pretrained(folder)  # safetensors; tied embeddings stay tied
        if tok is not None:
            tok.save_pretrained(folder)
        (folder / "prune_report.json").write_text(json.dumps(report, indent=1))

    try:
        with quiet_libraries(verbose=args.verbose):
            write_folder_atomically(out, write)
    except OSError as exc:
        raise OSError(f"could not save the pruned model to {out} ({exc}); {out} was left "
                      f"as it was") from exc


def calib_option(flag: CalibrationFlag) -> str:
    """The CLI's spelling of a calibration option: ``--calib-<name>``."""
    return f"--calib-{flag.name}"


def calibration_settings(args: argparse.Namespace,
                         data_driven: bool | None = None) -> CalibrationSettings | None:
    """The calibration data of a data-driven ``--method`` (None for the others; a width
    method unless ``data_driven`` says otherwise, as for the layer methods of ``--depth``);
    ``--calib-*`` given with a method that uses no data is an error, not silently ignored."""
    given = calibration_overrides(lambda f: getattr(args, f"calib_{f.field}"), calib_option)
    if data_driven is None:
        data_driven = needs_calibration(args.method)
    if not data_driven:
        if given:
            width = [m for m in known_methods() if needs_calibration(m)]
            raise ValueError(f"{', '.join(sorted(_given_calib(args)))} given, but --method "
                             f"{args.method} uses no calibration data; methods that do: "
                             f"{', '.join(width)} (width), {', '.join(DATA_METHODS)} (--depth)")
        return None
    return settings_for(args.model, **given)


def _given_calib(args: argparse.Namespace) -> list[str]:
    return [calib_option(f) for f in CALIBRATION_FLAGS
            if getattr(args, f"calib_{f.field}") is not None]


def report_fields(args: argparse.Namespace, report: PruneReport) -> dict[str, Any]:
    """The report's fields with both percentages named for what they are: the level asked
    for and the share of neurons actually removed (k is whole: 40 % of 512 removes 204
    neurons, 39.84 %; a rounding moves it further)."""
    fields = report.to_dict()
    return {"pct_requested": args.pct, "pct_removed": fields.pop("pct"),
            "expansion_ratio_requested": args.expansion_ratio, **fields}


def _stream(args: argparse.Namespace, out: Path, source: Source | None,
            calibration: CalibrationSettings | None) -> int:
    """``prune --stream``: folder to folder, one layer in memory at a time."""
    folder = source.location if source is not None else args.model_dir
    if folder is None or not Path(folder).is_dir():
        raise ValueError(f"--stream reads a safetensors model folder: give the folder as "
                         f"MODEL (or --model-dir FOLDER with a registered name), got "
                         f"{folder or args.model!r}")
    batches = None
    if calibration is not None:  # the same batches in-memory calibration would run
        tok = (source_tokenizer(source) if source is not None else
               load_tokenizer(args.model, model_dir=args.model_dir))
        batches = calibration_batches(calibration, tok)
    reports = []

    def write(tmp: Path) -> None:
        reports.append(stream_prune(
            folder, tmp, pct=args.pct, expansion_ratio=args.expansion_ratio,
            method=args.method, round_to=args.round_to, seed=args.seed,
            max_shard_size=args.max_shard_size, batches=batches,
            calibration_tag=None if calibration is None else calibration.tag))
        (tmp / "prune_report.json").write_text(json.dumps(
            {"model": source.name if source else args.model, "weights": "auto",
             "shape": width_shape(args), **report_fields(args, reports[0])}, indent=1))

    write_folder_atomically(out, write)
    sys.stdout.write(f"saved {source.name if source else args.model} streamed and pruned with {args.method}: intermediate "
                     f"{reports[0].intermediate_size_before} -> "
                     f"{reports[0].intermediate_size_after} -> {out}\n")
    return 0


def _cmd_prune_depth(args: argparse.Namespace, out: Path, source: Source | None) -> int:
    """``--depth N [--method M]`` or ``--remove-layers 3,5``: remove whole layers."""
    method = args.method or "last"
    if method not in LAYER_METHODS:
        raise ValueError(f"--method {method!r} is not a layer method; with --depth: "
                         f"{', '.join(LAYER_METHODS)}")
    if args.global_ or args.layers is not None or args.min_width is not None:
        raise ValueError("--global, --layers and --min-width shape width pruning (--pct); "
                         "drop them with --depth / --remove-layers")
    removed = None if args.remove_layers is None else parse_layers(args.remove_layers,
                                                                    "--remove-layers")
    args.method = method
    settings = calibration_settings(  # checked before the model loads
        args, data_driven=args.depth is not None and method in DATA_METHODS)
    with quiet_libraries(verbose=args.verbose):
        name, model, tok = load_named(args.model, source, weights=args.weights,
                                      model_dir=args.model_dir, seed=args.seed)
    batches = [] if settings is None else calibration_batches(settings, tok)
    report = prune_depth(model, n=args.depth, method=method, removed=removed, batches=batches)
    _save(args, out, model, tok, {"model": name, "weights": args.weights, **report})
    sys.stdout.write(f"saved {name} depth-pruned with {report['method']}: layers "
                     f"{report['layers_before']} -> {report['layers_after']} (removed "
                     f"{report['removed_layers']}), {report['params_removed_pct']:.2f}% of "
                     f"parameters removed -> {out}\n")
    return 0


def parse_layers(text: str, option: str) -> list[int]:
    """``--remove-layers 3,5`` / ``--layers 0,2``: layer indices; the error names the
    option and the text that is not a list of them."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{option} {text!r}: give comma-separated layer indices, "
                         f"e.g. 3,5") from None


def add_prune(sub: argparse._SubParsersAction, add_model: Any) -> None:
    """``prune MODEL (--pct | --expansion-ratio | --depth | --remove-layers) --out DIR ...``."""
    p = sub.add_parser("prune", help="prune a model and save it")
    add_model(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--pct", type=float, help="percentage of neurons to remove, in [0, 100)")
    how.add_argument("--expansion-ratio", type=float, help="target intermediate/hidden ratio")
    how.add_argument("--depth", type=int, help="number of whole decoder layers to remove")
    how.add_argument("--remove-layers", help="comma list of decoder layer indices to remove")
    methods = known_methods() + list(LAYER_METHODS)
    p.add_argument("--method", default=None, choices=methods, metavar="METHOD",
                   help=f"neuron importance: {', '.join(known_methods())}; act, wanda_sp, "
                        f"flap and maw_hybrid score by activations on calibration data, see "
                        f"--calib-* (default: maw); with --depth, which layers: "
                        f"{', '.join(LAYER_METHODS)} (default: last)")
    for flag in CALIBRATION_FLAGS:  # the plugin's --glu-calib-* options, one definition
        p.add_argument(calib_option(flag), dest=f"calib_{flag.field}", default=None,
                       type=None if flag.minimum is None else int, help=flag.help)
    p.add_argument("--layers", default=None,
                   help="with --pct: prune only these decoder layers (comma list, e.g. 0,2); "
                        "the others keep every neuron")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="with --pct: one threshold over all layers' standardised scores picks "
                        "per-layer widths, keeping as many neurons in all as uniform pruning "
                        "(load the result with glu_prune.load_pruned) (default: off)")
    p.add_argument("--min-width", type=int, default=None,
                   help="with --global: fewest neurons any layer keeps (default: a tenth "
                        "of the layer)")
    p.add_argument("--round-to", type=int, default=1, help="round kept size (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method (default: 0)")
    p.add_argument("--weights", default="auto", choices=["auto", "random"],
                   help="auto = local dir / hub; random = random weights (default: auto)")
    p.add_argument("--model-dir", default=None, help="local folder of the model's weights")
    p.add_argument("--out", required=True,
                   help="output folder, written atomically; must be empty or absent")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out folder (the old one stays intact if "
                        "saving fails) (default: off)")
    p.add_argument("--stream", action="store_true",
                   help="prune the MODEL folder's safetensors to --out one layer at a time, "
                        "never holding the model in memory; calibration methods run it layer "
                        "by layer (default: off)")
    p.add_argument("--max-shard-size", default=DEFAULT_SHARD_SIZE,
                   help=f"largest output shard with --stream (default: {DEFAULT_SHARD_SIZE})")
    # also after the subcommand; SUPPRESS keeps a -v given before it
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="as glu-prune -v")
    p.set_defaults(func=cmd_prune)


