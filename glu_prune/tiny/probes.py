"""In-context probes of a tiny model: which lookups it really makes, beside the twins' scores.

A twin's score can come from a shortcut. The lambada twin has two story kinds: in
"{A} lost a {o}. {B} found it. ... {B} gave the {o} back to" the answer is the other name,
which position alone gives; in "{A} carried a {o1} and {B} carried a {o2}. ... When they
needed the {o2}, they asked" only a lookup by content (which name carried that object)
answers. Scoring the kinds apart tells the two apart. ``repeat_copy`` asks for the plainest
lookup there is, the next word of a list the prompt already gave once (what an induction
head does), with every choice in the context so that chance is exact. ``mmlu_letters`` asks
the mmlu twin's questions in lm-eval's lettered mmlu prompt (options listed A-D, the letter
scored): the step the twin's cloze formulation leaves out, finding which letter holds the
recalled fact.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from glu_prune.tiny import TASKS_DIR
from glu_prune.tiny import world as W

LAMBADA_KINDS = {"back to": "by position (the other name)",
                 "they asked": "by lookup (who carried the object)"}
LIST_LEN = 6  # words per repeated list: chance of the copy probe is 1/6


def z_above_chance(accuracy: float, chance: float, n: int) -> float:
    """How many binomial standard errors at chance (for ``n`` items) ``accuracy`` lies above it."""
    return (accuracy - chance) / math.sqrt(chance * (1 - chance) / n)


@dataclass(frozen=True)
class ProbeScore:
    """Accuracy on ``n`` items against ``chance``; ``z``: binomial SEs above chance."""

    name: str
    accuracy: float
    n: int
    chance: float

    @property
    def z(self) -> float:
        return z_above_chance(self.accuracy, self.chance, self.n)


def _rows(data_file: str) -> list[dict]:
    """The rows of one twin's jsonl data file."""
    path = TASKS_DIR / "data" / data_file
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _continuation(model, tok, context: str, continuation: str):
    """(logits predicting each token of ``continuation`` after ``context``, those tokens)."""
    import torch

    ctx = tok(context)["input_ids"]
    full = tok(context + continuation)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0, len(ctx) - 1:len(full) - 1].float()
    return logits, torch.tensor(full[len(ctx):])


def _greedy_match(model, tok, context: str, target: str) -> bool:
    """Whether greedy decoding after ``context`` yields every token of `` target``."""
    logits, target_ids = _continuation(model, tok, context, f" {target}")
    return logits.argmax(-1).tolist() == target_ids.tolist()


def lambada_by_kind(model, tok) -> list[ProbeScore]:
    """Greedy accuracy (lm-eval's lambada ``acc``) on each story kind of the lambada twin;
    chance 0.5 (one of the story's two names)."""
    rows = _rows("lambada_openai.test.jsonl")
    hits: dict[str, list[bool]] = {k: [] for k in LAMBADA_KINDS}
    for row in rows:
        context, target = row["text"].rsplit(" ", 1)
        kind = next(k for k in LAMBADA_KINDS if context.endswith(k))
        hits[kind].append(_greedy_match(model, tok, context, target))
    return [ProbeScore(f"lambada, {LAMBADA_KINDS[k]}", sum(h) / len(h), len(h), 0.5)
            for k, h in hits.items()]


def _single_token_words(tok) -> list[str]:
    pool = W.OBJECTS + W.COLOURS + W.PETS + list(W.PROFESSIONS)
    return sorted({w for w in pool if len(tok(f" {w}", add_special_tokens=False)["input_ids"]) == 1})


def repeat_copy(model, tok, n: int = 200, seed: int = 0) -> ProbeScore:
    """A list of ``LIST_LEN`` distinct one-token words, then the list again cut short: is the
    next word of the list the likeliest of the six? Chance 1/``LIST_LEN``."""
    import torch

    words, rng, hits = _single_token_words(tok), random.Random(seed), 0
    for _ in range(n):
        seq = rng.sample(words, LIST_LEN)
        cut = rng.randrange(1, LIST_LEN)
        context = " ".join(seq) + ".\n" + " ".join(seq[:cut])
        ids = tok(context, return_tensors="pt")["input_ids"]
        cand = [tok(f" {w}", add_special_tokens=False)["input_ids"][0] for w in seq]
        with torch.no_grad():
            logits = model(ids).logits[0, -1, cand]
        hits += int(logits.argmax()) == cut
    return ProbeScore("repeated list, next word", hits / n, n, 1 / LIST_LEN)


def _loglik(model, tok, context: str, continuation: str) -> float:
    """Summed log-probability of ``continuation`` after ``context`` (as lm-eval scores a choice)."""
    logits, target_ids = _continuation(model, tok, context, continuation)
    return logits.log_softmax(-1).gather(1, target_ids[:, None]).sum().item()


def mmlu_letters(model, tok, n: int = 500) -> ProbeScore:
    """The first ``n`` mmlu twin test questions in lm-eval's lettered mmlu prompt (options
    listed A-D after the question, each letter scored as the answer; no shots); chance 1/4."""
    rows = _rows("mmlu.test.jsonl")[:n]
    hits = 0
    for row in rows:
        options = "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", row["choices"]))
        context = f"{row['question'].strip()}{options}\nAnswer:"
        lls = [_loglik(model, tok, context, f" {letter}") for letter in "ABCD"]
        hits += max(range(len(lls)), key=lls.__getitem__) == row["answer"]
    return ProbeScore("mmlu facts by letter (lettered prompt)", hits / len(rows), len(rows), 0.25)


def run_probes(model, tok) -> list[ProbeScore]:
    """Every probe on one model."""
    return [*lambada_by_kind(model, tok), repeat_copy(model, tok), mmlu_letters(model, tok)]
