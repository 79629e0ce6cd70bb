"""What the embedded tiny model must show, measured on the shipped weights (CPU, offline).

- above chance at 0 % on the knowledge twins (facts only in the weights) and the
  in-context twins (answer given earlier in the prompt), chance stated per twin;
- at chance on the two twins it does not learn (mmlu, leaderboard_musr);
- wikitext-twin perplexity far below a random-weight model of the same shape;
- MAW pruning 0..60 % raises wikitext-twin perplexity monotonically;
- the method comparison (study's notebook 00) runs.
"""

from __future__ import annotations

import math

import pytest

from glu_prune import tiny

torch = pytest.importorskip("torch")

# Knowledge twins: the answer is a fact stored only in the weights, asked in a held-out
# phrasing. In-context twin: the answer is a name given earlier in the text (LAMBADA-like).
KNOWLEDGE = {"arc_challenge": "acc,none", "truthfulqa_mc1": "acc,none",
             "truthfulqa_mc2": "acc,none", "mmlu": "acc,none", "leaderboard_musr": "acc_norm,none"}
IN_CONTEXT = {"lambada_openai": "acc,none"}
# Measured on the shipped model and reported, not hidden: the 1.2 M-parameter model does
# not learn mmlu's letter-answer mapping (0.267 vs chance 0.25, n=150) nor musr's two-hop
# "who made the bread -> who is the baker" (0.34 vs 1/3, n=150). These twins are held to
# chance: the test fails if the model learns them (the README's claim is then wrong) or
# falls below chance (something broke).
NOT_LEARNED = ("mmlu", "leaderboard_musr")
PPL = "word_perplexity,none"
MAW_LEVELS = (0, 10, 20, 30, 40, 50, 60)
RANDOM_RATIO = 10  # "far below": trained perplexity at least 10x lower than random weights


def _load(weights: str = "auto"):
    from glu_prune.core.loading import load_model

    if weights == "auto" and not (tiny.MODEL_DIRS["tiny-llama"] / "model.safetensors").is_file():
        pytest.fail("shipped tiny-llama weights missing: run python -m glu_prune.tiny train")
    model, tok = load_model("tiny-llama", weights=weights, dtype=torch.float32, device="cpu")
    if tok is None:  # random weights: the shipped tokenizer still applies
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny.MODEL_DIRS["tiny-llama"])
    return model, tok


def _eval(model, tok, names) -> dict[str, dict[str, float]]:
    from glu_prune.tools.tiny_compare import evaluate_twins

    return evaluate_twins(model, tok, list(names))


@pytest.fixture(scope="module")
def unpruned_scores() -> dict[str, dict[str, float]]:
    model, tok = _load()
    return _eval(model, tok, [*KNOWLEDGE, *IN_CONTEXT, "wikitext"])


def _chance_se(bench: str) -> tuple[float, float, int]:
    """Chance, its binomial standard error at the twin's size, and the size."""
    chance, n = tiny.CHANCE[bench], tiny.TWIN_SIZES[bench]
    return chance, math.sqrt(chance * (1 - chance) / n), n


def _above_chance(bench: str, key: str, scores: dict) -> None:
    chance, se, n = _chance_se(bench)
    score = scores[bench][key]
    bar = chance + 3 * se  # 3 standard errors above chance
    assert score > bar, f"{bench} {key} = {score:.3f}, chance {chance:.3f} (n={n}), needs > {bar:.3f}"


@pytest.mark.accuracy
@pytest.mark.parametrize("bench", [b for b in KNOWLEDGE if b not in NOT_LEARNED])
def test_knowledge_twins_above_chance(unpruned_scores, bench):
    _above_chance(bench, KNOWLEDGE[bench], unpruned_scores)


@pytest.mark.accuracy
@pytest.mark.parametrize("bench", NOT_LEARNED)
def test_not_learned_twins_are_at_chance(unpruned_scores, bench):
    """Within 3 standard errors of chance (measured 0.267 in [0.144, 0.356] for mmlu,
    0.34 in [0.218, 0.449] for leaderboard_musr, n = 150)."""
    chance, se, n = _chance_se(bench)
    score = unpruned_scores[bench][KNOWLEDGE[bench]]
    low, high = chance - 3 * se, chance + 3 * se
    assert low <= score <= high, (f"{bench} {KNOWLEDGE[bench]} = {score:.3f}, chance "
                                  f"{chance:.3f} (n={n}), expected within [{low:.3f}, {high:.3f}]")


@pytest.mark.accuracy
@pytest.mark.parametrize("bench", list(IN_CONTEXT))
def test_in_context_twins_above_chance(unpruned_scores, bench):
    _above_chance(bench, IN_CONTEXT[bench], unpruned_scores)


@pytest.mark.perplexity
def test_wikitext_perplexity_far_below_random_weights(unpruned_scores):
    model, tok = _load("random")
    random_ppl = _eval(model, tok, ["wikitext"])["wikitext"][PPL]
    trained = unpruned_scores["wikitext"][PPL]
    assert trained * RANDOM_RATIO < random_ppl, f"trained {trained:.2f} vs random {random_ppl:.2f}"


@pytest.mark.perplexity
@pytest.mark.methods
def test_maw_pruning_raises_wikitext_perplexity_monotonically(unpruned_scores):
    from glu_prune import prune_glu_mlp

    ppl = [unpruned_scores["wikitext"][PPL]]
    for pct in MAW_LEVELS[1:]:
        model, tok = _load()
        prune_glu_mlp(model, pct=pct, method="maw")
        ppl.append(_eval(model, tok, ["wikitext"])["wikitext"][PPL])
    pairs = list(zip(MAW_LEVELS, ppl))
    assert all(a < b for a, b in zip(ppl, ppl[1:])), f"not monotonic: {pairs}"


@pytest.mark.methods
@pytest.mark.slow
def test_compare_methods_runs():
    from glu_prune.tools.tiny_compare import COLUMNS, compare_methods

    table = compare_methods(pcts=(10,), methods=("maw", "random"))
    lines = table.splitlines()
    assert len(lines) == 2 + 3  # header, rule, unpruned + 2 methods
    assert all(c in lines[0] for c in COLUMNS)
