"""Neuron-selection comparison on the tiny model (the study's notebook 00, reproduced).

Every method at each pruning level, on the wikitext, boolq and lambada twins.
"""

from __future__ import annotations

import logging

import torch
from tabulate import tabulate
from tqdm import tqdm
from transformers import AutoTokenizer

from glu_prune import tiny
from glu_prune.catalog.benchmarks import benchmarks_for, get_benchmark
from glu_prune.core.loading import load_model
from glu_prune.core.prune import prune_glu_mlp
from glu_prune.evaluation import EvalSettings, ResultCache, evaluate_variant
from glu_prune.tiny.probes import run_probes, z_above_chance

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("maw", "vow", "pon", "l2", "random")
BENCHMARKS: tuple[str, ...] = ("wikitext", "boolq", "lambada_openai")
COLUMNS: dict[str, tuple[str, str]] = {  # column -> (benchmark, metric key)
    "wikitext word_ppl": ("wikitext", "word_perplexity,none"),
    "boolq acc": ("boolq", "acc,none"),
    "lambada acc": ("lambada_openai", "acc,none"),
    "lambada ppl": ("lambada_openai", "perplexity,none"),
}


def evaluate_twins(model, tokenizer, names: tuple[str, ...] | list[str],
                   model_name: str = "tiny-llama", cache: ResultCache | None = None,
                   slug: str = "tiny-compare") -> dict[str, dict[str, float]]:
    """Metrics of the named twins on an in-memory model: {benchmark: {metric key: value}}.

    With ``cache`` (the suite's), a result is read back when the suite already evaluated
    the same weights under ``slug`` with default settings: the key holds the model's
    content identity, so other weights never hit."""
    return {b: {k: v.value for k, v in m.items()}
            for b, m in _twin_metrics(model, tokenizer, names, model_name, cache, slug).items()}


def _twin_metrics(model, tokenizer, names, model_name: str, cache: ResultCache | None = None,
                  slug: str = "tiny-compare") -> dict[str, dict]:
    """{benchmark: {metric key: MetricValue (value, stderr, n)}} of the named twins."""
    benches = [get_benchmark(model_name, n) for n in names]
    ev = evaluate_variant(model, tokenizer, slug, benches, EvalSettings(), cache=cache,
                          progress=log.debug)
    # result() raises a failed twin's own error instead of a bare KeyError
    return {b.name: dict(ev.result(b.name).metrics) for b in benches}


def level_zero_table(name: str) -> str:
    """Every twin's score at level 0 with its standard error, chance, and how many binomial
    standard errors at chance (at the twin's size) the score lies above it."""
    model, tok = load_model(name, dtype=torch.float32, device="cpu")
    names = [b.name for b in benchmarks_for(name)]
    rows = []
    for b, metrics in _twin_metrics(model, tok, names, name).items():
        for k, m in metrics.items():
            chance = tiny.CHANCE.get(b) if k.split(",")[0] in ("acc", "acc_norm") else None
            z = z_above_chance(m.value, chance, tiny.TWIN_SIZES[b]) if chance is not None else None
            rows.append([b, k, round(m.value, 3), "" if m.stderr is None else round(m.stderr, 3),
                         "" if chance is None else round(chance, 3),
                         "" if z is None else f"{z:+.1f}"])
    return tabulate(rows, headers=["twin", "metric", "score", "stderr", "chance",
                                   "SE above chance"], tablefmt="github")


def probe_table(name: str) -> str:
    """The in-context probes (``tiny.probes``) of one shipped model, with chance and how many
    binomial standard errors above it each lies."""
    model, tok = load_model(name, dtype=torch.float32, device="cpu")
    rows = [[s.name, round(s.accuracy, 3), s.n, round(s.chance, 3), f"{s.z:+.1f}"]
            for s in run_probes(model, tok)]
    return tabulate(rows, headers=["probe", "accuracy", "n", "chance", "SE above chance"],
                    tablefmt="github")


def compare_methods(pcts: list[int] | tuple[int, ...] = (10, 30),
                    methods: tuple[str, ...] = METHODS) -> str:
    """Markdown table: unpruned row, then every method at every level."""
    torch.set_num_threads(2)
    rows = []
    runs = [("none", 0)] + [(m, p) for p in pcts for m in methods]
    for method, pct in tqdm(runs, desc="methods"):
        model, tok = load_model("tiny-llama", dtype=torch.float32, device="cpu")
        if pct:
            prune_glu_mlp(model, pct=pct, method=method, seed=0)
        res = _metrics(model, tok)
        rows.append([method, pct, model.config.intermediate_size,
                     *(round(res[c], 3) for c in COLUMNS)])
        log.info("%s %d%%: %s", method, pct, rows[-1][3:])
    return tabulate(rows, headers=["method", "pct", "kept", *COLUMNS], tablefmt="github")


def _metrics(model, tok) -> dict[str, float]:
    out = evaluate_twins(model, tok, BENCHMARKS)
    return {c: out[b][k] for c, (b, k) in COLUMNS.items()}


def maw_sweep(levels: tuple[int, ...] = (0, 10, 20, 30, 40, 50, 60)) -> list[tuple[int, float]]:
    """(pct, wikitext-twin word perplexity) for MAW pruning at each level."""
    out = []
    for pct in tqdm(levels, desc="maw sweep"):
        model, tok = load_model("tiny-llama", dtype=torch.float32, device="cpu")
        if pct:
            prune_glu_mlp(model, pct=pct, method="maw")
        out.append((pct, evaluate_twins(model, tok, ["wikitext"])["wikitext"]["word_perplexity,none"]))
    return out


def full_report() -> str:
    """Markdown with every number the README states about the embedded model."""
    torch.set_num_threads(2)
    parts = []
    for name in ("tiny-llama", "tiny-llama-instruct"):
        parts.append(f"### {name}, unpruned\n\n" + level_zero_table(name))
        parts.append(f"### {name}, in-context probes\n\n" + probe_table(name))
    model, _ = load_model("tiny-llama", weights="random", dtype=torch.float32, device="cpu")
    tok = AutoTokenizer.from_pretrained(tiny.MODEL_DIRS["tiny-llama"])
    rnd = evaluate_twins(model, tok, ["wikitext"])["wikitext"]["word_perplexity,none"]
    sweep = maw_sweep()
    parts.append("### wikitext twin, word perplexity\n\n" + tabulate(
        [["random weights (same shape)", "", round(rnd, 2)]]
        + [["tiny-llama, MAW", p, round(v, 2)] for p, v in sweep],
        headers=["model", "pct pruned", "word_perplexity"], tablefmt="github"))
    parts.append("### neuron selection at 10 % and 30 %\n\n" + compare_methods())
    return "\n\n".join(parts)
