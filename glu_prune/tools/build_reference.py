"""Build the real models' baseline files from the published study's result files.

``python -m glu_prune.tools.build_reference [--reference DIR] [--out DIR]``. The study renamed
lm-eval's metric keys and dropped most stderrs; this maps the names back and fills a binomial stderr
``sqrt(p(1-p)/n)`` (n = the task's test-set size) where one is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from glu_prune.catalog.benchmarks import Benchmark, benchmarks_for
from glu_prune.core.variants import variant_slug
from glu_prune.judging.quality_store import FORMAT, baseline_path, dump, validate

LOG = logging.getLogger(__name__)

SOURCE = "published study, NVIDIA L4, bf16"
# file -> registered model
REFERENCE_FILES: dict[str, str] = {
    "llama_1b_complete_results_latest.json": "llama-3.2-1b",
    "llama_3b_complete_results_latest.json": "llama-3.2-3b",
    "llama_1b_I_complete_results_latest.json": "llama-3.2-1b-instruct",
}
UNPUBLISHED: tuple[str, ...] = ("llama-3.2-3b-instruct",)
# The study's renamed keys -> lm-eval's (reference/README.md).
RENAMED: dict[str, str] = {"accuracy": "acc,none", "acc_norm": "acc_norm,none",
                           "perplexity": "perplexity,none"}
RUN_INFO = {"device": "NVIDIA L4", "dtype": "bfloat16", "batch_size": "auto",
            "lm_eval_version": "0.4.x", "runs": 1}
NOTES = [
    "metric keys mapped back to lm-eval's: accuracy -> acc,none, acc_norm -> acc_norm,none, "
    "lambada perplexity -> perplexity,none",
    "stderr as published where the file kept it (gsm8k, ifeval prompt-level, "
    "leaderboard_musr); elsewhere binomial sqrt(p(1-p)/n) with n = the task's test-set size "
    "(ifeval inst-level: n = 541 prompts, a conservative stand-in for the instruction count)",
    "perplexities have no stderr (the study kept none); they are judged by a relative "
    "tolerance",
    "lambada_openai acc,none was not kept by the study (its zeros were placeholders): no "
    "baseline for it",
]
STDERR_REASON = ("the published study kept no stderr for perplexities (see notes); judged by "
                 "a relative tolerance")


def _binomial(p: float, n: int | None) -> float | None:
    if not n or not 0.0 <= p <= 1.0:
        return None
    return round(math.sqrt(p * (1.0 - p) / n), 6)


def _metric_entry(b: Benchmark, key: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline entry of one judged metric from a study result row, or None if absent."""
    renamed = {RENAMED.get(k, k): v for k, v in raw.items()}
    value = renamed.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None  # "N/A" or not kept
    metric = b.metric(key)
    if b.name == "lambada_openai" and metric.kind == "accuracy":
        return None  # the study's lambada accuracy was never kept
    se = renamed.get(metric.stderr_key)
    if metric.kind == "perplexity":
        se = None
    elif not isinstance(se, (int, float)):
        se = _binomial(float(value), b.n)
    entry = {"value": float(value), "stderr": None if se is None else float(se), "n": b.n}
    if se is None:  # a null stderr must say why (glu_prune.judging.quality_store)
        entry["stderr_reason"] = STDERR_REASON
    return entry


def build_model(model: str, study: dict[str, Any], file_name: str) -> dict[str, Any]:
    """The baseline file content for ``model`` from one study result file."""
    benches = {b.name: b for b in benchmarks_for(model)}
    shots = {e["name"]: int(e["num_fewshot"]) for e in study["benchmarks"]}
    settings = {}
    for name, b in benches.items():
        if shots.get(name) != b.num_fewshot:
            raise ValueError(f"{file_name}: {name} ran {shots.get(name)}-shot, the registry "
                             f"says {b.num_fewshot}-shot")
        settings[name] = {"task": b.task, "num_fewshot": b.num_fewshot, "limit": None,
                          "chat_template": False}
    results: dict[str, Any] = {}
    for entry in study["models_evaluated"].values():
        slug = variant_slug(model, "maw", entry["pruning_pct"])
        per_bench = {}
        for name, raw in entry["results"].items():
            if name not in benches:
                raise ValueError(f"{file_name}: unknown benchmark {name!r} for {model}")
            metrics = {m.key: e for m in benches[name].metrics
                       if (e := _metric_entry(benches[name], m.key, raw)) is not None}
            if metrics:
                per_bench[name] = metrics
        results[slug] = per_bench
    meta = study.get("experiment_metadata", {})
    provenance = {"source": SOURCE, "reference_file": file_name,
                  "timestamp": meta.get("timestamp"), "method": meta.get("pruning_method"),
                  "citation": study.get("citation"), "notes": NOTES,
                  "absent": {"lambada_openai acc,none": "the published study did not keep "
                             "lambada accuracy (its zeros were placeholders)"}}
    return {"format": FORMAT, "model": model, "provenance": provenance, "settings": RUN_INFO,
            "benchmarks": settings, "results": results}


def unpublished(model: str) -> dict[str, Any]:
    """A file with no entries: every test of the model skips with 'no baseline'."""
    note = f"no published numbers for {model}; pin one from a run on real weights"
    return {"format": FORMAT, "model": model, "provenance": {"source": "none", "note": note},
            "settings": {}, "benchmarks": {}, "results": {}}


def build_reference(reference_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every real model's baseline file; returns the paths written."""
    reference_dir, written = Path(reference_dir), []
    contents = {m: build_model(m, json.loads((reference_dir / f).read_text()), f)
                for f, m in REFERENCE_FILES.items()}
    contents.update({m: unpublished(m) for m in UNPUBLISHED})
    for model, data in contents.items():
        path = baseline_path(out_dir, model)
        validate(data, path, {b.name: b for b in benchmarks_for(model)})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(data), encoding="utf-8")
        written.append(path)
        LOG.info("wrote %s", path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: build every real model's baseline file."""
    ap = argparse.ArgumentParser(prog="python -m glu_prune.tools.build_reference",
                                 description=__doc__)
    ap.add_argument("--reference", default="tests/data/reference",
                    help="folder of the study's result files (default: tests/data/reference, "
                         "the copy kept in this repository)")
    ap.add_argument("--out", default="baselines", help="baseline folder (default: baselines)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_reference(args.reference, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
