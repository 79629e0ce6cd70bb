"""Writes the data files of the 13 offline benchmark twins (``tasks/data/*.jsonl``).

Items use held-out phrasings (``world.EVAL_*``) or held-out documents
(``world.is_eval_key``), in the fields the real lm-eval task reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

from glu_prune.tiny import TASKS_DIR
from glu_prune.tiny import corpus as C
from glu_prune.tiny import scenes as S
from glu_prune.tiny import world as W
from glu_prune.tiny.world import Person

log = logging.getLogger(__name__)
DATA_DIR = TASKS_DIR / "data"
N_ITEMS = 500  # a 5-point accuracy change is then outside 2 standard errors


def _fact_mc(rng: random.Random, people: list[Person], k: int = 4):
    """(person, attr, held-out question, shuffled options, index of the right one)."""
    p, a = rng.choice(people), rng.choice(W.ATTRS)
    opts = C.wrong_values(rng, a, p.get(a), k - 1) + [p.get(a)]
    rng.shuffle(opts)
    return p, a, C.fill(rng.choice(W.EVAL_QUESTIONS[a]), p, a), opts, opts.index(p.get(a))


def mmlu(rng, people, n):
    """MMLU fields: question, choices (4), answer (index)."""
    out = []
    for _ in range(n):
        _, _, q, opts, i = _fact_mc(rng, people)
        out.append({"question": q, "choices": opts, "answer": i, "subject": "tiny_world"})
    return out


def arc(rng, people, n):
    """ARC fields: question, choices {text, label}, answerKey."""
    out = []
    for _ in range(n):
        _, _, q, opts, i = _fact_mc(rng, people)
        out.append({"question": q, "choices": {"text": opts, "label": list("ABCD")},
                    "answerKey": "ABCD"[i]})
    return out


def truthfulqa(rng, people, n):
    """TruthfulQA fields: question, mc1_targets (first true), mc2_targets (2 true, 3 false)."""
    out = []
    for _ in range(n):
        p, a = rng.choice(people), rng.choice(W.ATTRS)
        wrong = C.wrong_values(rng, a, p.get(a), 3)
        true = [C.fill(W.ANSWER_SENTENCES[a], p, a), C.fill(W.EVAL_ANSWER_SENTENCES[a], p, a)]
        false = [C.fill(W.ANSWER_SENTENCES[a], p, a, v) for v in wrong]
        out.append({"question": C.fill(rng.choice(W.EVAL_QUESTIONS[a]), p, a),
                    "mc1_targets": {"choices": true[:1] + false, "labels": [1, 0, 0, 0]},
                    "mc2_targets": {"choices": true + false, "labels": [1, 1, 0, 0, 0]}})
    return out


def musr(rng, people, n):
    """MuSR fields: narrative, question, choices (as a string list), answer_choice: who got
    which object, as the narrative says (``scenes.gifts``)."""
    out = []
    while len(out) < n:
        if (s := S.gifts(rng, people, held_out=True)) is None:
            continue
        q, i = s["questions"][0]
        out.append({"narrative": s["narrative"], "question": q, "choices": str(s["names"]),
                    "answer_choice": i, "answer_index": i})
    return out


def hellaswag(rng, people, n):
    """HellaSwag raw fields (lm-eval's own process_docs builds query/choices): an everyday
    activity goes on with the tool its purpose calls for (world rule)."""
    query, ending = C.ACTIVITY_EVAL
    label, ctx = query.split(": ", 1)
    ctx_a, ctx_b = ctx.split(". ", 1)
    out = []
    for _ in range(n):
        name = rng.choice(people).name
        purpose, tool = rng.choice(list(W.TOOLS.items()))
        opts = rng.sample([t for t in W.TOOLS.values() if t != tool], 3) + [tool]
        rng.shuffle(opts)
        out.append({"activity_label": label, "ctx_a": ctx_a.format(n=name, purpose=purpose) + ".",
                    "ctx_b": ctx_b[0].lower() + ctx_b[1:], "ctx": "",
                    "endings": [ending.format(tool=o) for o in opts],
                    "label": str(opts.index(tool))})
    return out


def piqa(rng, people, n):
    """PIQA fields: goal, sol1, sol2, label."""
    out = []
    for _ in range(n):
        purpose, tool = rng.choice(list(W.TOOLS.items()))
        wrong = rng.choice([t for t in W.TOOLS.values() if t != tool])
        sols = [f"Get a {tool}.", f"Get a {wrong}."]
        label = rng.randrange(2)
        if label:
            sols.reverse()
        out.append({"goal": f"What should you get in order to {purpose}?",
                    "sol1": sols[0], "sol2": sols[1], "label": label})
    return out


WINO = {  # kind -> sentence with two options and a blank
    "profession": "At the {place}, {n} talked with the {o1} and the {o2}, and it turned out "
                  "that _ {rule} for the whole town.",
    "tool": "{n} saw the {o1} and the {o2} on the table and knew that _ was needed to {rule}.",
}


def winogrande(rng, people, n):
    """Winogrande fields: sentence with '_', option1, option2, answer ('1'/'2'). Which of
    two professions or tools the rest of the sentence fits (world rules; the option sits
    right before the part lm-eval scores)."""
    rules = {"profession": {k: v[0] for k, v in W.PROFESSIONS.items()},
             "tool": {t: purpose for purpose, t in W.TOOLS.items()}}
    out = []
    for i in range(n):
        kind = ("profession", "tool")[i % 2]
        o1, o2 = rng.sample(list(rules[kind]), 2)
        ans = rng.randrange(2)
        sent = WINO[kind].format(place=rng.choice(W.PLACES), n=rng.choice(people).name,
                                 o1=o1, o2=o2, rule=rules[kind][(o1, o2)[ans]])
        out.append({"sentence": sent, "option1": f"the {o1}", "option2": f"the {o2}",
                    "answer": str(ans + 1)})
    return out


def boolq(rng, people, n):
    """BoolQ fields: passage, question (lowercase, no '?'), label (0 no / 1 yes): a passage
    about a newcomer (``scenes.reading``), so only the passage can answer."""
    out = []
    for _ in range(n):
        r = S.reading(rng, people, held_out=True)
        q, label = r["questions"][0]
        out.append({"passage": r["passage"], "question": q, "label": label})
    return out


def lambada(rng, people, n):
    """LAMBADA field: text, whose last word (a name from the story) is the target."""
    out = []
    while len(out) < n:
        if (s := C.story(rng, people, held_out=True)) is not None:
            out.append({"text": f"{s[0]} {s[1]}"})
    return out


def gsm8k(rng, people, n):
    """GSM8K fields: question, answer (worked, ending '#### N')."""
    out = []
    while len(out) < n:
        if (d := C.arithmetic(rng, people, held_out=True)) is not None:
            out.append(d)
    return out


def ifeval(rng, people, n):
    """IFEval fields: key, prompt, instruction_id_list, kwargs."""
    out = []
    while len(out) < n:
        if (d := C.instruction(rng, people, held_out=True)) is not None:
            out.append({"key": len(out), "prompt": d["prompt"],
                        "instruction_id_list": d["instruction_id_list"], "kwargs": d["kwargs"]})
    return out


def wikitext(rng, people, n):
    """Wikitext field: page (raw wikitext style, held-out articles)."""
    return [{"page": "\n".join(C.gen_wiki(rng, people) for _ in range(3))} for _ in range(n)]


# twin -> (item builder, {split: count})
TWINS: dict[str, tuple[Callable, dict[str, int]]] = {
    "wikitext": (wikitext, {"test": 8}),
    "mmlu": (mmlu, {"test": N_ITEMS, "dev": 5}),
    "arc_challenge": (arc, {"test": N_ITEMS}),
    "hellaswag": (hellaswag, {"validation": N_ITEMS}),
    "winogrande": (winogrande, {"validation": N_ITEMS}),
    "piqa": (piqa, {"validation": N_ITEMS}),
    "boolq": (boolq, {"validation": N_ITEMS}),
    "lambada_openai": (lambada, {"test": 200}),
    "truthfulqa_mc1": (truthfulqa, {"validation": N_ITEMS}),
    "truthfulqa_mc2": (truthfulqa, {"validation": N_ITEMS}),
    "gsm8k": (gsm8k, {"test": 100, "train": 5}),
    "ifeval": (ifeval, {"train": 60}),
    "leaderboard_musr": (musr, {"test": N_ITEMS}),
}


def build_twins(seed: int = W.SEED) -> dict[str, dict[str, list[dict]]]:
    """All twin items, deterministic from ``seed``: {twin: {split: [item, ...]}}."""
    people = W.make_people()
    data = {}
    for i, (name, (fn, splits)) in enumerate(TWINS.items()):
        rng = random.Random(seed * 1000 + 100 + i)
        data[name] = {s: fn(rng, people, k) for s, k in splits.items()}
    return data


def write_twins(out: Path = DATA_DIR) -> None:
    """Write every twin's splits as ``<twin>.<split>.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, splits in build_twins().items():
        for split, items in splits.items():
            with open(out / f"{name}.{split}.jsonl", "w") as f:
                f.writelines(json.dumps(it) + "\n" for it in items)
    log.info("wrote twin data to %s", out)


VERSIONS_FILE = TASKS_DIR / "versions.json"  # {task: {metadata.version: content digest}}


def twin_digest(stem: str, yaml_text: str | None = None) -> str:
    """sha256 of what a twin asks: its YAML (comment lines left out) and every data file
    ``data/<stem>.*.jsonl``. ``yaml_text`` replaces the file's text (an older revision).

    ``versions.json`` holds the digest of each version ever shipped; a test fails when a
    twin's content changes under the same version, since baselines pinned under that
    version would then be compared with another test."""
    text = yaml_text if yaml_text is not None else (TASKS_DIR / f"{stem}.yaml").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")]
    h = hashlib.sha256("".join(lines).encode())
    for line in lines:  # an included YAML (truthfulqa_mc2 includes mc1) decides too
        if line.startswith("include:"):
            h.update(twin_digest(Path(line.split(":", 1)[1].strip()).stem).encode())
    for path in sorted(DATA_DIR.glob(f"{stem}.*.jsonl")):
        h.update(f"\n{path.name}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:32]
