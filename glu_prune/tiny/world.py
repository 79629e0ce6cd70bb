"""The synthetic world: people with attributes, world rules, and sentence templates.

Everything derives from one seed. Templates come in two disjoint sets: ``TRAIN_*``
(used in the training corpus) and ``EVAL_*`` (held-out phrasings, used only by the
benchmark twins), so evaluation asks about known facts in words never trained on.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

SEED = 1234
N_PEOPLE = 200  # "a few hundred" entities x 4 attributes = 800 facts in the weights

CITIES = ["Varo", "Kestel", "Mirra", "Dunholm", "Pellan", "Oskar", "Tirva", "Belmor",
          "Ardun", "Selwick", "Marn", "Quillon", "Hesk", "Lorvi", "Zandor", "Fenmoor"]
PROFESSIONS = {  # profession -> (activity, the thing it makes or handles)
    "baker": ("bakes bread", "bread"), "fisher": ("catches fish", "fish"),
    "farmer": ("grows wheat", "wheat"), "teacher": ("teaches children", "lessons"),
    "doctor": ("heals the sick", "medicine"), "painter": ("paints pictures", "pictures"),
    "builder": ("builds houses", "houses"), "singer": ("sings songs", "songs"),
    "tailor": ("sews coats", "coats"), "miner": ("digs for iron", "iron"),
    "sailor": ("sails ships", "ships"), "potter": ("makes pots", "pots"),
}
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
PETS = ["cat", "dog", "horse", "goat", "parrot", "rabbit", "owl", "turtle"]
TOOLS = {  # purpose -> tool (physical world rules, for the piqa/hellaswag twins)
    "cut the bread": "knife", "drink some water": "cup", "dry the wet hands": "towel",
    "light the dark room": "lamp", "sweep the floor": "broom", "write a letter": "pen",
    "open the locked door": "key", "eat the soup": "spoon", "hit the nail": "hammer",
    "reach the high shelf": "ladder", "stay dry in the rain": "umbrella",
    "stay warm in the snow": "coat", "catch a fish": "net", "carry the water": "bucket",
    "sew the torn shirt": "needle", "cut the wood": "saw", "find the way": "map",
    "tell the time": "clock", "wash the dirty hands": "soap", "dig a hole": "shovel",
}
ATTRS = ("city", "profession", "colour", "pet")
CHOICES = {"city": CITIES, "profession": list(PROFESSIONS), "colour": COLOURS, "pet": PETS}

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
           "dr", "gr", "kr", "tr", "sh", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "n", "r", "l", "s", "m", "th", "k"]


@dataclass(frozen=True)
class Person:
    """One entity of the world and its four attributes (facts stored only in weights)."""

    name: str
    city: str
    profession: str
    colour: str
    pet: str

    def get(self, attr: str) -> str:
        """Attribute value by name."""
        return getattr(self, attr)


def _name(rng: random.Random) -> str:
    syl = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2)]
    return ("".join(syl) + rng.choice(_CODAS)).capitalize()


def invent_name(rng: random.Random) -> str:
    """A made-up name in the style of the world's people (two syllables and a coda)."""
    return _name(rng)


def reserved_words() -> set[str]:
    """Capitalised attribute values, which no invented name may equal."""
    return {w.capitalize() for w in CITIES + list(PROFESSIONS) + COLOURS + PETS}


def make_people(seed: int = SEED, n: int = N_PEOPLE) -> list[Person]:
    """The world's people: unique invented names with random attributes."""
    rng = random.Random(seed)
    taken = reserved_words()
    people: list[Person] = []
    while len(people) < n:
        name = _name(rng)
        if name in taken or len(name) > 9:
            continue
        taken.add(name)
        people.append(Person(name, rng.choice(CITIES), rng.choice(list(PROFESSIONS)),
                             rng.choice(COLOURS), rng.choice(PETS)))
    return people


def is_eval_key(key: str, fraction: int = 8) -> bool:
    """Deterministic split of generated documents: 1 in ``fraction`` keys is eval-only."""
    return zlib.crc32(key.encode()) % fraction == 0


def article(p: Person) -> str:
    """Indefinite article for the person's profession."""
    return "an" if p.profession[0] in "aeiou" else "a"


# Fact statements (training only). {n} name, {v} value, {a} article, {act} activity.
TRAIN_FACTS = {
    "city": ["{n} lives in {v}.", "{n}'s home is in {v}.", "{n} has a house in the city of {v}.",
             "Every morning {n} walks through the streets of {v}.",
             "{n} was born in {v} and still lives there.", "The city where {n} lives is {v}."],
    "profession": ["{n} is {a} {v}.", "{n} works as {a} {v}.", "By trade, {n} is {a} {v}.",
                   "{n} is {a} {v} and {act} every day.", "People know {n} as the {v}.",
                   "{n} has been {a} {v} for many years."],
    "colour": ["{n}'s favourite colour is {v}.", "{n} likes the colour {v} best.",
               "{n} always wears something {v}.", "Of all colours, {n} loves {v} the most.",
               "{n} painted the door {v}, the favourite colour.",
               "The favourite colour of {n} is {v}."],
    "pet": ["{n} has a {v}.", "{n} keeps a {v} as a pet.", "{n}'s pet is a {v}.",
            "{n} feeds the {v} every evening.", "At home, {n} lives with a pet {v}.",
            "The pet of {n} is a {v}."],
}
# Questions about facts: training phrasings and held-out (eval) phrasings.
TRAIN_QUESTIONS = {
    "city": ["Where does {n} live?", "Which city is {n} from?", "What is the home city of {n}?"],
    "profession": ["What does {n} do for a living?", "What is {n}'s job?",
                   "What is the profession of {n}?"],
    "colour": ["What is {n}'s favourite colour?", "Which colour does {n} like best?",
               "What colour does {n} love most?"],
    "pet": ["What pet does {n} have?", "Which animal does {n} keep?", "What is {n}'s pet?"],
}
EVAL_QUESTIONS = {
    "city": ["In which city does {n} have a home?", "Which town does {n} call home?"],
    "profession": ["How does {n} earn a living?", "What kind of work does {n} do?"],
    "colour": ["Which colour is the favourite of {n}?", "What is the colour {n} prefers?"],
    "pet": ["Which animal lives with {n} as a pet?", "What animal is {n}'s pet?"],
}
# Full-sentence answers (truthfulqa-style); {v} value, {a} article.
ANSWER_SENTENCES = {
    "city": "{n} lives in {v}.", "profession": "{n} is {a} {v}.",
    "colour": "{n}'s favourite colour is {v}.", "pet": "{n} has a {v}.",
}
EVAL_ANSWER_SENTENCES = {  # held-out second paraphrase of a true answer (mc2)
    "city": "The home of {n} is {v}.", "profession": "The work of {n} is that of {a} {v}.",
    "colour": "{v} is the colour {n} likes most.", "pet": "A {v} is the pet of {n}.",
}


PLACES = ["lake", "market", "forest", "harbour", "old mill", "fair", "hills", "library"]
OBJECTS = ["lamp", "rope", "map", "key", "basket", "drum", "kite", "book", "flute", "ball"]
FILLERS = ["The sun was warm.", "A cold wind came from the hills.", "Birds sang in the trees.",
           "The road was long and dusty.", "Nobody spoke for a while.", "It began to rain.",
           "The market was busy that day.", "A dog barked somewhere far away.",
           "They laughed about an old story.", "The river was high after the storm.",
           "Bells rang from the tower.", "The bread smelled good."]


def fill(template: str, p: Person, attr: str | None = None, value: str | None = None) -> str:
    """Render a fact template for person ``p`` (optionally with a substituted value)."""
    v = value if value is not None else (p.get(attr) if attr else "")
    prof = v if attr == "profession" else p.profession
    a = "an" if (v if attr == "profession" else prof)[:1] in "aeiou" else "a"
    text = template.format(n=p.name, v=v, a=a, act=PROFESSIONS[prof][0])
    return text[0].upper() + text[1:]


def wrong_values(rng: random.Random, attr: str, right: str, k: int) -> list[str]:
    """``k`` distinct wrong values of an attribute."""
    return rng.sample([c for c in CHOICES[attr] if c != right], k)
