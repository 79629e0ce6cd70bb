"""What the embedded tiny models must show, measured on the shipped weights (CPU, offline).

- every twin with a chance level scores above it by at least 5 standard errors at 0 %
  (the base model on its 10, the instruct model on its 5), except the twins named in
  ``NOT_LEARNED``, which are held to chance instead (so the README's claim is tested both
  ways);
- wikitext-twin perplexity far below a random-weight model of the same shape;
- MAW pruning raises wikitext-twin perplexity at every level from 10 % to 60 %;
- the in-context probes (``tiny.probes``) show what the README says: the lambada twin's
  stories answered by position are learned, the ones that need a lookup by content are
  at chance, and so are the plainest lookup, copying the next word of a repeated list,
  and answering the mmlu twin's questions by letter;
- the method comparison (study's notebook 00) runs.
"""

from __future__ import annotations

import math

import pytest

from glu_prune import tiny

torch = pytest.importorskip("torch")

SIGMAS = 5  # "above chance": by at least 5 binomial standard errors at the twin's size
# Measured on the shipped v3 weights and reported, not hidden (glu_prune/tiny/README.md):
# the 1.2 M-parameter model does not learn a lookup by content several tokens back (boolq:
# is the asked value the one the passage states; musr: who got the object the question
# names). These twins are held to chance: the test fails if the model learns them (the
# README is then wrong) or falls below chance (something broke). (mmlu's letter step is the
# same lookup; the mmlu twin uses lm-eval's cloze formulation, and the probe
# ``mmlu_letters`` holds the lettered prompt to chance.)
NOT_LEARNED = ("boolq", "leaderboard_musr")
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


def _eval(model, tok, names, config=None, model_name: str = "tiny-llama",
          pct: int | None = None) -> dict[str, dict[str, float]]:
    """The twins' metrics; with ``config`` and ``pct``, through the suite's result cache
    under the suite's slug for MAW at ``pct`` (a hit needs the same weights: the key holds
    the model's content identity), so a CI run evaluates the shipped model once, not twice."""
    from glu_prune.core.variants import variant_slug
    from glu_prune.plugin.session import session_of
    from glu_prune.tools.tiny_compare import evaluate_twins

    if config is None or pct is None:
        return evaluate_twins(model, tok, list(names), model_name)
    return evaluate_twins(model, tok, list(names), model_name,
                          cache=session_of(config).quality.cache,
                          slug=variant_slug(model_name, "maw", pct))


def _chance_se(bench: str) -> tuple[float, float, int]:
    """Chance, its binomial standard error at the twin's size, and the size."""
    chance, n = tiny.CHANCE[bench], tiny.TWIN_SIZES[bench]
    return chance, math.sqrt(chance * (1 - chance) / n), n


def _accuracy_key(bench: str) -> str:
    """The twin's first accuracy metric in the benchmark registry (as results.md shows)."""
    from glu_prune.catalog.benchmarks import benchmark_set

    b = next(b for b in benchmark_set("tiny") if b.name == bench)
    return next(m.key for m in b.metrics if m.key.startswith("acc"))


def _scores(model_name: str, benches: tuple[str, ...], config) -> dict[str, float]:
    from glu_prune.core.loading import load_model

    model, tok = load_model(model_name, dtype=torch.float32, device="cpu")
    got = _eval(model, tok, benches, config, model_name, pct=0)
    return {b: got[b][_accuracy_key(b)] for b in benches}


BASE = tuple(b for b in tiny.BASE_BENCHMARKS if b in tiny.CHANCE)
INSTRUCT = tuple(b for b in tiny.INSTRUCT_BENCHMARKS if b in tiny.CHANCE)


@pytest.fixture(scope="module")
def base_accuracy(pytestconfig) -> dict[str, float]:
    return _scores("tiny-llama", BASE, pytestconfig)


@pytest.fixture(scope="module")
def instruct_accuracy(pytestconfig) -> dict[str, float]:
    return _scores("tiny-llama-instruct", INSTRUCT, pytestconfig)


def _check(bench: str, score: float) -> None:
    chance, se, n = _chance_se(bench)
    where = f"{bench} {_accuracy_key(bench)} = {score:.3f}, chance {chance:.3f} (n={n})"
    if bench in NOT_LEARNED:
        low, high = chance - 3 * se, chance + 3 * se
        assert low <= score <= high, f"{where}: held to chance, expected in [{low:.3f}, {high:.3f}]"
    else:
        bar = chance + SIGMAS * se
        assert score > bar, f"{where}: needs > {bar:.3f} ({SIGMAS} standard errors above)"


@pytest.mark.accuracy
@pytest.mark.parametrize("bench", BASE)
def test_base_twin_above_chance(base_accuracy, bench):
    _check(bench, base_accuracy[bench])


@pytest.mark.accuracy
@pytest.mark.parametrize("bench", INSTRUCT)
def test_instruct_twin_above_chance(instruct_accuracy, bench):
    _check(bench, instruct_accuracy[bench])


@pytest.fixture(scope="module")
def unpruned_scores(pytestconfig) -> dict[str, dict[str, float]]:
    model, tok = _load()
    return _eval(model, tok, ["wikitext"], pytestconfig, pct=0)


@pytest.mark.perplexity
def test_wikitext_perplexity_far_below_random_weights(unpruned_scores):
    model, tok = _load("random")
    random_ppl = _eval(model, tok, ["wikitext"])["wikitext"][PPL]
    trained = unpruned_scores["wikitext"][PPL]
    assert trained * RANDOM_RATIO < random_ppl, f"trained {trained:.2f} vs random {random_ppl:.2f}"


@pytest.mark.perplexity
@pytest.mark.methods
def test_maw_pruning_raises_wikitext_perplexity_from_10_percent_on(unpruned_scores,
                                                                  pytestconfig):
    """From 10 % on, each MAW level has a higher wikitext-twin perplexity than the one
    before, and from 20 % on than the unpruned model. Not from 0 to 10 %: on the v3
    weights MAW at 10 % *lowers* it (7.41 -> 7.27, measured and reported in the tiny
    README), as light pruning sometimes does; the first world's weights rose there."""
    from glu_prune import prune_glu_mlp

    ppl = [unpruned_scores["wikitext"][PPL]]
    for pct in MAW_LEVELS[1:]:
        model, tok = _load()
        prune_glu_mlp(model, pct=pct, method="maw")
        ppl.append(_eval(model, tok, ["wikitext"], pytestconfig, pct=pct)["wikitext"][PPL])
    pairs = list(zip(MAW_LEVELS, ppl))
    assert all(a < b for a, b in zip(ppl[1:], ppl[2:])), f"not monotonic from 10 %: {pairs}"
    assert all(p > ppl[0] for p in ppl[2:]), f"a level from 20 % on beats level 0: {pairs}"


# Measured on the shipped v3 weights (glu_prune/tiny/README.md, "What the model does in
# context"): probe -> learned (at least SIGMAS above chance) or held to chance (within 3).
PROBES_LEARNED = {"lambada, by position (the other name)": True,
                  "lambada, by lookup (who carried the object)": False,
                  "repeated list, next word": False,
                  "mmlu facts by letter (lettered prompt)": False}


@pytest.fixture(scope="module")
def probe_scores():
    from glu_prune.tiny.probes import run_probes

    return {s.name: s for s in run_probes(*_load())}


@pytest.mark.accuracy
@pytest.mark.parametrize("probe", PROBES_LEARNED)
def test_in_context_probe_as_documented(probe_scores, probe):
    s = probe_scores[probe]
    where = f"{probe}: {s.accuracy:.3f} on {s.n}, chance {s.chance:.3f}, {s.z:+.1f} SE"
    if PROBES_LEARNED[probe]:
        assert s.z > SIGMAS, f"{where}: needs > {SIGMAS} SE above chance"
    else:
        assert abs(s.z) <= 3, f"{where}: held to chance (within 3 SE); the README says so"


@pytest.mark.methods
@pytest.mark.slow
def test_compare_methods_runs():
    from glu_prune.tools.tiny_compare import COLUMNS, compare_methods

    table = compare_methods(pcts=(10,), methods=("maw", "random"))
    lines = table.splitlines()
    assert len(lines) == 2 + 3  # header, rule, unpruned + 2 methods
    assert all(c in lines[0] for c in COLUMNS)
