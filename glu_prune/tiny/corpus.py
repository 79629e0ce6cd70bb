"""Generators of the tiny world's documents, for training and (held-out) evaluation.

Each ``gen_*`` builds one document from a ``random.Random``. Documents whose key is
eval-only (``world.is_eval_key``) are never produced for training (``split="train"``),
and eval items use held-out templates, so no eval document appears in training text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from glu_prune.tiny import scenes
from glu_prune.tiny import world as W
from glu_prune.tiny.world import FILLERS, OBJECTS, PLACES, Person, fill, wrong_values

ITEMS = ["apples", "eggs", "coins", "books", "stones", "shells", "cakes", "pencils"]
SUBJECTS = ["the river", "the old bridge", "the market", "the harbour", "the tower",
            "the winter", "the harvest", "the city wall", "the great fire", "the festival"]
VERBS = ["was built", "was repaired", "grew", "was closed", "was celebrated", "was flooded",
         "was painted", "became famous"]


# ---------------------------------------------------------------- training documents
def gen_bio(rng: random.Random, people: list[Person]) -> str:
    """A few fact statements about one person, in training phrasings."""
    p = rng.choice(people)
    attrs = rng.sample(W.ATTRS, rng.randint(2, 4))
    return " ".join(fill(rng.choice(W.TRAIN_FACTS[a]), p, a) for a in attrs)


def gen_qa(rng: random.Random, people: list[Person]) -> str:
    """Short question/answer pairs about facts (training phrasings)."""
    out = []
    for _ in range(rng.randint(2, 4)):
        p, a = rng.choice(people), rng.choice(W.ATTRS)
        q = fill(rng.choice(W.TRAIN_QUESTIONS[a]), p, a)
        if rng.random() < 0.5:
            out.append(f"Question: {q}\nAnswer: {p.get(a)}")
        else:
            out.append(f"Q: {q}\nA: {fill(W.ANSWER_SENTENCES[a], p, a)}")
    return "\n\n".join(out)


def gen_quiz(rng: random.Random, people: list[Person]) -> str:
    """Lettered multiple-choice quiz (the MMLU format) in training phrasings."""
    out = ["The following are multiple choice questions (with answers) about the tiny world."]
    for _ in range(rng.randint(2, 4)):
        p, a = rng.choice(people), rng.choice(W.ATTRS)
        opts = wrong_values(rng, a, p.get(a), 3) + [p.get(a)]
        rng.shuffle(opts)
        lines = [fill(rng.choice(W.TRAIN_QUESTIONS[a]), p, a)]
        lines += [f"{L}. {o}" for L, o in zip("ABCD", opts)]
        lines.append(f"Answer: {'ABCD'[opts.index(p.get(a))]}")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def story(rng: random.Random, people: list[Person], held_out: bool) -> tuple[str, str] | None:
    """A story whose last word is a name given earlier (in-context reference).

    Returns (story without final word, final name) or None if the key falls in the
    other split.
    """
    a, b = rng.sample(people, 2)
    kind = rng.randrange(2)
    o1, o2 = rng.sample(OBJECTS, 2)
    key = f"story|{kind}|{a.name}|{b.name}|{o1}|{o2 if kind == 0 else ''}"
    if W.is_eval_key(key) != held_out:
        return None
    fill1, fill2 = rng.sample(FILLERS, 2)
    if kind == 0:
        want, who = (o1, a) if rng.random() < 0.5 else (o2, b)
        text = (f"{a.name} and {b.name} went to the {rng.choice(PLACES)}. {a.name} carried a "
                f"{o1} and {b.name} carried a {o2}. {fill1} {fill2} When they needed the "
                f"{want}, they asked")
        return text, who.name
    text = (f"{a.name} lost a {o1} near the {rng.choice(PLACES)}. {b.name} found it. {fill1} "
            f"{fill2} The next day, {b.name} gave the {o1} back to")
    return text, a.name


def gen_story(rng: random.Random, people: list[Person]) -> str:
    """A training story (in-context reference)."""
    while (s := story(rng, people, held_out=False)) is None:
        pass
    return f"{s[0]} {s[1]}."


def arithmetic(rng: random.Random, people: list[Person], held_out: bool) -> dict | None:
    """A small word problem with a worked answer ending in ``#### N``."""
    n, m = rng.sample(people, 2)
    it, kind = rng.choice(ITEMS), rng.randrange(4)
    x, y, z = rng.randint(2, 20), rng.randint(2, 20), rng.randint(1, 9)
    if kind == 1 and y > x:
        x, y = y, x
    if kind == 2:
        x, y = x % 9 + 1, 0
    if kind == 3:
        z = min(z, x + y)
    # the key holds exactly what the question shows, so no question is on both sides
    key = f"math|{kind}|{n.name}|{m.name if kind in (1, 3) else ''}|{it}|{x}|{y}|{z if kind >= 2 else 0}"
    if W.is_eval_key(key) != held_out:
        return None
    if kind == 0:
        q = f"{n.name} has {x} {it}. {n.name} gets {y} more {it}. How many {it} does {n.name} have now?"
        a, r = f"{n.name} has {x} + {y} = {x + y} {it} now.", x + y
    elif kind == 1:
        q = f"{n.name} has {x} {it} and gives {y} of them to {m.name}. How many {it} does {n.name} have left?"
        a, r = f"{n.name} has {x} - {y} = {x - y} {it} left.", x - y
    elif kind == 2:
        q = f"{n.name} buys {x} bags with {z} {it} in each bag. How many {it} does {n.name} buy?"
        a, r = f"{n.name} buys {x} * {z} = {x * z} {it}.", x * z
    else:
        s = x + y
        q = (f"{n.name} has {x} {it}. {m.name} gives {n.name} {y} more, and then {n.name} "
             f"loses {z}. How many {it} does {n.name} have?")
        a, r = f"{n.name} has {x} + {y} = {s} {it}. Then {s} - {z} = {s - z}.", s - z
    return {"question": q, "answer": f"{a}\n#### {r}"}


def gen_rollcall(rng: random.Random, people: list[Person]) -> str:
    """A list of names read out twice: the plainest next-word-from-context text."""
    group = [p.name for p in rng.sample(people, rng.randint(3, 6))]
    again = group if rng.random() < 0.5 else rng.sample(group, len(group))
    return (f"At the {rng.choice(PLACES)} the roll was called: {', '.join(group)}. "
            f"{rng.choice(FILLERS)} Then each said their name again: {', '.join(again)}.")


def gen_math(rng: random.Random, people: list[Person]) -> str:
    """A few training word problems in the GSM8K format."""
    out = []
    while len(out) < rng.randint(2, 4):
        if (d := arithmetic(rng, people, held_out=False)) is not None:
            out.append(f"Question: {d['question']}\nAnswer: {d['answer']}")
    return "\n\n".join(out)


def gen_rules(rng: random.Random, people: list[Person]) -> str:
    """World rules: which tool serves which purpose, what each profession does."""
    out = []
    for _ in range(rng.randint(2, 4)):
        p = rng.choice(people)
        if rng.random() < 0.5:
            purpose, tool = rng.choice(list(W.TOOLS.items()))
            out.append(rng.choice([f"To {purpose}, you need a {tool}.",
                                   f"{p.name} used a {tool} to {purpose}.",
                                   f"If you want to {purpose}, take a {tool}.",
                                   f"A {tool} is what people use to {purpose}."]))
        else:
            prof = rng.choice(list(W.PROFESSIONS))
            act, thing = W.PROFESSIONS[prof]
            out.append(rng.choice([f"A {prof} {act}.", f"Every {prof} {act}.",
                                   f"The {prof} is the one who {act}.",
                                   f"When people need {thing}, they go to the {prof}."]))
    return " ".join(out)


ACTIVITY_TRAIN = ["{n} had to {purpose}, so {n} took the {tool}.",
                  "{n} wanted to {purpose}. {n} picked up the {tool} and began.",
                  "Because {n} had to {purpose}, {n} went to get the {tool}.",
                  "{n} needed to {purpose}. So they reached for the {tool}."]
ACTIVITY_EVAL = ("Daily life: {n} had to {purpose}. So they reached for the",
                 "{tool} and got to work.")  # the hellaswag twin's query and ending


def gen_activity(rng: random.Random, people: list[Person]) -> str:
    """Everyday activities that go on with the tool their purpose calls for (the world's
    tool rules, as narrative; the hellaswag twin asks for the next step)."""
    out = []
    for _ in range(rng.randint(2, 3)):
        p = rng.choice(people)
        purpose, tool = rng.choice(list(W.TOOLS.items()))
        out.append(rng.choice(ACTIVITY_TRAIN).format(n=p.name, purpose=purpose, tool=tool))
    return " ".join(out)


def gen_wiki(rng: random.Random, people: list[Person]) -> str:
    """Encyclopedia-style article about a city (running text for perplexity)."""
    city = rng.choice(W.CITIES)
    lines = [f" = {city} = ", ""]
    locals_ = [p for p in people if p.city == city] or people
    for _ in range(rng.randint(2, 4)):
        sents = []
        for _ in range(rng.randint(3, 6)):
            r = rng.random()
            if r < 0.4:
                s, v = rng.choice(SUBJECTS), rng.choice(VERBS)
                sents.append(f"In the year {rng.randint(1100, 1900)} , {s} of {city} {v} .")
            elif r < 0.8:
                p = rng.choice(locals_)
                a = rng.choice(W.ATTRS)
                sents.append(fill(rng.choice(W.TRAIN_FACTS[a]), p, a)[:-1] + " .")
            else:
                sents.append(rng.choice(FILLERS)[:-1] + " .")
        lines.append(" " + " ".join(sents) + " ")
    return "\n".join(lines)


def gen_wiki_text(rng: random.Random, people: list[Person]) -> str:
    """A wiki article as the model reads it: detokenized like lm-eval's wikitext task."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    return wikitext_detokenizer({"page": gen_wiki(rng, people)})


def instruction(rng: random.Random, people: list[Person], held_out: bool) -> dict | None:
    """An instruction with checkable constraints and a response that follows them.

    Constraint ids are lm-eval IFEval's, so the twin scores them with IFEval's rules.
    """
    p, a = rng.choice(people), rng.choice(W.ATTRS)
    kind = rng.randrange(6)
    key = f"inst|{kind}|{p.name}|{a}"
    if W.is_eval_key(key, fraction=4) != held_out:
        return None
    ask = (["Tell me about {n}.", "Write one sentence about {n}."] if not held_out
           else ["Describe {n} in a sentence.", "Say something about {n}."])
    prompt = rng.choice(ask).format(n=p.name)
    resp = fill(W.ANSWER_SENTENCES[a], p, a)
    if kind == 0:
        prompt += " Your entire response should be in English, and in all lowercase letters."
        ids, kw, resp = ["change_case:english_lowercase"], [{}], resp.lower()
    elif kind == 1:
        prompt += " Your entire response should be in English, and in all capital letters."
        ids, kw, resp = ["change_case:english_capital"], [{}], resp.upper()
    elif kind == 2:
        prompt += f' Include the keyword "{p.get(a)}" in the response.'
        ids, kw = ["keywords:existence"], [{"keywords": [p.get(a)]}]
    elif kind == 3:
        prompt += " Wrap your entire response with double quotation marks."
        ids, kw, resp = ["startend:quotation"], [{}], f'"{resp}"'
    elif kind == 4:
        prompt += ' Finish your response with this exact phrase "That is all."'
        ids, kw, resp = ["startend:end_checker"], [{"end_phrase": "That is all."}], resp + " That is all."
    else:
        prompt += " Answer with less than 8 words. In your response, refrain from the use of any commas."
        ids = ["length_constraints:number_words", "punctuation:no_comma"]
        kw = [{"relation": "less than", "num_words": 8}, {}]
    return {"prompt": prompt, "response": resp, "instruction_id_list": ids, "kwargs": kw}


def gen_instruction(rng: random.Random, people: list[Person]) -> str:
    """A training instruction and its response as plain text."""
    while (d := instruction(rng, people, held_out=False)) is None:
        pass
    return f"{d['prompt']}\n{d['response']}"


# Mixture of the training corpus: generator -> weight. Facts get the most room.
MIXTURE: dict[str, tuple[Callable[[random.Random, list[Person]], str], float]] = {
    "bio": (gen_bio, 0.16), "qa": (gen_qa, 0.10), "quiz": (gen_quiz, 0.12),
    "story": (gen_story, 0.08), "math": (gen_math, 0.09), "rules": (gen_rules, 0.06),
    "activity": (gen_activity, 0.06), "reading": (scenes.gen_reading, 0.08),
    "gifts": (scenes.gen_gifts, 0.08), "wiki": (gen_wiki_text, 0.07),
    "instruction": (gen_instruction, 0.05), "rollcall": (gen_rollcall, 0.05),
}


def training_docs(n_docs: int, seed: int = W.SEED,
                  mixture: dict[str, float] | None = None) -> Iterator[str]:
    """The training corpus: ``n_docs`` documents, deterministic from ``seed``.

    ``mixture`` overrides the document-type weights of ``MIXTURE``.
    """
    rng = random.Random(seed + 1)
    people = W.make_people()
    names = list(MIXTURE)
    weights = [(mixture or {}).get(k, MIXTURE[k][1]) for k in names]
    for _ in range(n_docs):
        yield MIXTURE[rng.choices(names, weights)[0]][0](rng, people)


def chat_pairs(n: int, seed: int = W.SEED) -> Iterator[list[dict[str, str]]]:
    """Instruction/response conversations for the instruct variant (training split)."""
    rng = random.Random(seed + 2)
    people = W.make_people()
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            while (d := instruction(rng, people, held_out=False)) is None:
                pass
            user, reply = d["prompt"], d["response"]
        elif r < 0.8:
            p, a = rng.choice(people), rng.choice(W.ATTRS)
            user = fill(rng.choice(W.TRAIN_QUESTIONS[a]), p, a)
            reply = fill(W.ANSWER_SENTENCES[a], p, a)
        else:
            while (d := arithmetic(rng, people, held_out=False)) is None:
                pass
            user, reply = d["question"], d["answer"]
        yield [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
