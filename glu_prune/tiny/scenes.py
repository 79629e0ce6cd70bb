"""In-context scenes: what the prompt itself says decides the answer.

Shared by training documents (``held_out=False``) and twins (``held_out=True``): the two
sides draw from disjoint scenes (``world.is_eval_key`` on everything a scene shows), so no
twin item occurs in training text. Each training document asks several questions about
one scene, each twin item one: the lookup is practised densely, as associative-recall
tasks are, rather than once per document.
"""

from __future__ import annotations

import random

from glu_prune.tiny import world as W
from glu_prune.tiny.world import Person

GIFT_OBJECTS = W.OBJECTS + ["cup", "hat", "bell", "box", "coin", "shell"]

# ---------------------------------------------------------------- reading a passage (boolq)
# A yes/no question whose value comes last: it is right when the passage says it.
BOOL_QUESTIONS = {"city": "does {n} live in {v}", "profession": "is {n} {a} {v}",
                  "colour": "is {n}'s favourite colour {v}", "pet": "does {n} have a {v}"}


def newcomer(rng: random.Random, people: list[Person], held_out: bool) -> Person:
    """Someone who is none of the world's 200 people, with attributes drawn afresh, so no
    fact about them is in the weights: only a passage can say. A twin's newcomer names
    (``is_eval_key``) never appear in training text."""
    taken = {p.name for p in people} | W.reserved_words()
    while True:
        name = W.invent_name(rng)
        if name not in taken and W.is_eval_key(f"newcomer|{name}") == held_out:
            return Person(name, rng.choice(W.CITIES), rng.choice(list(W.PROFESSIONS)),
                          rng.choice(W.COLOURS), rng.choice(W.PETS))


def _bool_question(p: Person, attr: str, value: str) -> str:
    article = "an" if value[:1] in "aeiou" else "a"
    return BOOL_QUESTIONS[attr].format(n=p.name, v=value, a=article)


def reading(rng: random.Random, people: list[Person], held_out: bool,
            n_questions: int = 1) -> dict:
    """A passage about a newcomer (3 or 4 of their facts) and yes/no questions on it,
    half of them true: {"passage", "questions": [(question, label 0/1), ...]}."""
    p = newcomer(rng, people, held_out)
    attrs = rng.sample(W.ATTRS, rng.randint(3, 4))
    passage = " ".join(W.fill(rng.choice(W.TRAIN_FACTS[a][:3]), p, a) for a in attrs)
    questions = []
    for a in rng.sample(attrs, min(n_questions, len(attrs))):
        label = rng.randrange(2)
        v = p.get(a) if label else W.wrong_values(rng, a, p.get(a), 1)[0]
        questions.append((_bool_question(p, a, v), label))
    return {"passage": passage, "questions": questions}


def gen_reading(rng: random.Random, people: list[Person]) -> str:
    """Training: a newcomer's passage, then 2-3 questions in the BoolQ format."""
    r = reading(rng, people, held_out=False, n_questions=rng.randint(2, 3))
    qa = [f"Question: {q}?\nAnswer: {('no', 'yes')[y]}" for q, y in r["questions"]]
    return r["passage"] + "\n" + "\n".join(qa)


# ---------------------------------------------------------------- who got what (musr)
GIFT_INTROS = ["{a}, {b} and {c} met at the {p}.", "At the {p} were {a}, {b} and {c}.",
               "{a}, {b} and {c} spent the day at the {p}."]
GIFT_LINES = ["The {o} went to {x}.", "The {o} was given to {x}.", "The {o} ended up with {x}."]


def gifts(rng: random.Random, people: list[Person], held_out: bool) -> dict | None:
    """Three people each get one object; questions ask who got which.
    {"narrative", "names", "questions": [(question, index of the name), ...]} (all 3
    objects, in random order); None when the drawn scene is on the other side."""
    names = [p.name for p in rng.sample(people, 3)]
    objs = rng.sample(GIFT_OBJECTS, 3)
    owner = rng.sample(range(3), 3)  # object i goes to names[owner[i]]
    if W.is_eval_key("gifts|" + "|".join(names + objs + [str(i) for i in owner])) != held_out:
        return None
    line = rng.choice(GIFT_LINES)
    sents = [rng.choice(GIFT_INTROS).format(a=names[0], b=names[1], c=names[2],
                                            p=rng.choice(W.PLACES)),
             rng.choice(W.FILLERS)]
    sents += [line.format(o=o, x=names[owner[i]]) for i, o in enumerate(objs)]
    questions = [(f"Who got the {objs[i]}?", owner[i]) for i in rng.sample(range(3), 3)]
    return {"narrative": " ".join(sents), "names": names, "questions": questions}


def musr_prompt(narrative: str, question: str, names: list[str]) -> str:
    """lm-eval's leaderboard_musr prompt, for training documents (its own doc_to_text)."""
    from lm_eval.tasks.leaderboard.musr.utils import doc_to_text

    return doc_to_text({"narrative": narrative, "question": question, "choices": str(names)})


def gen_gifts(rng: random.Random, people: list[Person]) -> str:
    """Training: a gifts scene, then 2-3 of its questions in the MuSR format."""
    while (s := gifts(rng, people, held_out=False)) is None:
        pass
    first, *rest = s["questions"][:rng.randint(2, 3)]
    out = [musr_prompt(s["narrative"], first[0], s["names"]) + f" {s['names'][first[1]]}"]
    out += [f"{q}\nAnswer: {s['names'][i]}" for q, i in rest]
    return "\n\n".join(out)
