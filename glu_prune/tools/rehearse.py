"""Dress rehearsal of a real run: every real benchmark of a model, on fixture rows.

Runs lm-eval's real task definitions through the suite's own evaluation
(:func:`glu_prune.evaluation.runner.evaluate_variant`) with the datasets served from fixture rows,
so a new machine shows in minutes whether the whole path works (lm-eval version, task
configs, ifeval's packages and nltk data, the model on its device) before GPU hours are
spent on the real test sets. Scores on fixture rows mean nothing; that they exist does.

    python -m glu_prune.task_fixtures --model llama-3.2-1b
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any, Sequence

from tabulate import tabulate

from glu_prune.catalog.benchmarks import REAL_BENCHMARKS, Benchmark, benchmarks_for
from glu_prune.core.loading import WeightsUnavailable, load_model
from glu_prune.evaluation import (EvalSettings, PreflightError, VariantEvaluation,
                                  check_ifeval_resources, evaluate_variant)
from glu_prune.task_fixtures import serve_fixtures

LOG = logging.getLogger(__name__)

IFEVAL_MAX_GEN_TOKS = 1280  # lm-eval's ifeval.yaml: generation_kwargs.max_gen_toks


def real_benchmarks(model_name: str) -> list[Benchmark]:
    """The real lm-eval benchmarks of ``model_name``'s set (a tiny model: the real tasks its
    twins stand in for)."""
    return [REAL_BENCHMARKS[b.name] for b in benchmarks_for(model_name)]


def model_context(model: Any) -> int | None:
    """The model's context length from its config (None when the config does not say)."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def settings_for(benchmark: Benchmark, model: Any, settings: EvalSettings) -> EvalSettings:
    """``settings``, with room for ifeval's 1280 new tokens when the context is shorter.

    lm-eval keeps ``max_length - max_gen_toks`` tokens of prompt and refuses to generate
    when that is not positive. Real Llama-3.2 contexts (128k) never hit this; the tiny
    model's 1024 positions do, so it gets its context again on top of the generation
    (RoPE runs past the trained length; those tokens only have to be scored).
    """
    context = model_context(model)
    if (benchmark.name != "ifeval" or settings.max_length is not None or context is None
            or context > IFEVAL_MAX_GEN_TOKS):
        return settings
    return replace(settings, max_length=IFEVAL_MAX_GEN_TOKS + context)


def rehearse(model: Any, tokenizer: Any, benchmarks: Sequence[Benchmark],
             settings: EvalSettings | None = None, slug: str = "rehearsal",
             check_resources: bool = True) -> VariantEvaluation:
    """Evaluate ``benchmarks`` on fixture rows through the suite's evaluation path.

    Never touches the suite's result cache: a rehearsal's scores mean nothing, and keeping
    them out of the cache keeps the cache to real runs. ifeval's resources are
    checked first (``check_resources``), as a real run checks them.
    """
    settings = settings or EvalSettings()
    if check_resources and any(b.name == "ifeval" for b in benchmarks):
        check_ifeval_resources()
    groups: dict[EvalSettings, list[Benchmark]] = {}
    for b in benchmarks:
        groups.setdefault(settings_for(b, model, settings), []).append(b)
    out = VariantEvaluation(slug)
    with serve_fixtures() as loader:
        for group_settings, group in groups.items():
            part = evaluate_variant(model, tokenizer, slug, group, group_settings, cache=None)
            out.results.update(part.results)
            out.errors.update(part.errors)  # result() raises each benchmark's own failure
            out.evaluated.extend(part.evaluated)
    LOG.info("rehearsal read %d fixture dataset(s)", len(set(loader.requests)))
    return out


def result_rows(evaluation: VariantEvaluation) -> list[list[Any]]:
    """One table row per judged metric: benchmark, metric, value, stderr, n, few-shot."""
    rows = []
    for name, result in evaluation.results.items():
        for key, m in result.metrics.items():
            rows.append([name, key, m.value, m.stderr, m.n, result.settings.get("num_fewshot")])
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m glu_prune.task_fixtures",
        description="Dress rehearsal: run every real lm-eval benchmark of a model on small "
                    "fixture rows through the suite's evaluation, offline.")
    parser.add_argument("--model", default="tiny-llama",
                        help="registered model name (default: tiny-llama)")
    parser.add_argument("--device", default=None,
                        help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--models-dir", default=None,
                        help="folder of <model-name>/ saved models (default: "
                             "$GLU_PRUNE_MODELS_DIR or the hub)")
    parser.add_argument("--benchmarks", default=None,
                        help="comma list of benchmark names (default: all of the model's)")
    parser.add_argument("--batch-size", type=int, default=EvalSettings.batch_size,
                        help=f"lm-eval batch size (default: {EvalSettings.batch_size})")
    return parser


def select_benchmarks(model_name: str, names: str | None) -> list[Benchmark]:
    """The real benchmarks of ``model_name`` named in the comma list ``names`` (all when
    None), in registry order; an unknown name is a ValueError listing the known ones."""
    benchmarks = real_benchmarks(model_name)
    if names is None:
        return benchmarks
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {b.name for b in benchmarks}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)} for {model_name}; "
                         f"known: {', '.join(b.name for b in benchmarks)}")
    return [b for b in benchmarks if b.name in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: load the model, rehearse, print one table.

    Exit status: 0 every benchmark reported; 1 some failed (each logged with its cause);
    2 nothing ran (a bad argument, ifeval's resources or the model's weights missing).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        benchmarks = select_benchmarks(args.model, args.benchmarks)
    except (KeyError, ValueError) as exc:  # unknown model or benchmark
        parser.error(str(exc).strip("'\""))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if any(b.name == "ifeval" for b in benchmarks):
            check_ifeval_resources()  # before the model loads, as a real run does
        model, tokenizer = load_model(args.model, device=args.device,
                                      model_dir=args.models_dir)
    except (PreflightError, WeightsUnavailable) as exc:
        LOG.error("%s", exc)
        return 2
    evaluation = rehearse(model, tokenizer, benchmarks,
                          EvalSettings(batch_size=args.batch_size),
                          slug=f"rehearsal-{args.model}", check_resources=False)
    print(tabulate(result_rows(evaluation),  # noqa: T201 - the command's output
                   headers=["benchmark", "metric", "value", "stderr", "n", "few-shot"]))
    for name, exc in evaluation.errors.items():
        LOG.error("%s failed: %s: %s", name, type(exc).__name__, exc)
    missing = [b.name for b in benchmarks if b.name not in evaluation.results]
    if missing:
        LOG.error("no result for: %s", ", ".join(missing))
        return 1
    return 0
