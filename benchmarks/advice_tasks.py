"""Four tasks for the advice benchmark, each with answers computed by code.

Exact match means something only when there is exactly one right answer, so every answer
here is computed from the question by a few lines of Python (``json``, ``str`` methods,
sorting). The tasks differ in answer length and difficulty:

- ``classify``: a support message to one of five departments, cued by its wording (one word).
- ``extract``: a sentence about a person to a JSON object with four fields (about 25 tokens).
- ``sort_list``: 6-10 grocery items to an alphabetically sorted, numbered list (long answers,
  60-120 tokens).
- ``compose``: two string operations applied in order to a word, e.g. "reverse, then
  uppercase" (compositional: each operation is easy, the pair must be composed).

``splits(task, train, test=200, seed=0)`` gives disjoint train and test records (no test
question occurs in training). The train splits of one task are nested: the 300 records are
the first 300 of the 1,000, which are the first 1,000 of the 5,000; the test split is the
same 200 records for every size.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from tunesmith.quickstart.task import record

SIZES = (300, 1_000, 5_000)
TEST_RECORDS = 200

# -- classify -----------------------------------------------------------------------------------
DEPARTMENTS = {
    "billing": ["I was charged twice", "my invoice shows the wrong amount", "the refund never reached my card",
                "why did my subscription price go up", "I need a receipt for my last payment"],
    "shipping": ["my parcel is stuck in transit", "the courier left it at the wrong address",
                 "can I change the delivery date", "tracking has not updated in a week", "the box arrived crushed"],
    "account": ["I cannot log in", "please change the email on my profile", "how do I reset my password",
                "I want to delete my account", "my username was taken over"],
    "technical": ["the app crashes when I open it", "the website shows an error 500", "the device will not pair",
                  "the update froze my screen", "sync stopped working on my laptop"],
    "sales": ["do you offer a discount for schools", "I want a quote for 40 units", "is there a bulk price",
              "can I get a demo of the pro plan", "what does the enterprise tier include"],
}
OPENERS = ["Hi,", "Hello team,", "Good morning.", "Hey there -", "Dear support,", ""]
CLOSERS = ["Thanks.", "Please help.", "Regards, Sam", "Cheers!", "Any news?", ""]


def classify(rng: random.Random) -> tuple[str, str]:
    department = rng.choice(sorted(DEPARTMENTS))
    text = " ".join(filter(None, [rng.choice(OPENERS), rng.choice(DEPARTMENTS[department]).capitalize() + ".",
                                  f"Ref {rng.randint(100, 999)}.", rng.choice(CLOSERS)]))
    return text, department


# -- extract ------------------------------------------------------------------------------------
FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jia", "Kofi", "Lena",
         "Mateo", "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
LAST = ["Smith", "Okafor", "Novak", "Tanaka", "Garcia", "Muller", "Rossi", "Haddad", "Silva", "Kowalski",
        "Nguyen", "Larsen", "Dubois", "Moreau", "Ivanova"]
CITIES = ["Lyon", "Osaka", "Lagos", "Porto", "Quito", "Bergen", "Tunis", "Leeds", "Graz", "Cusco", "Perth"]
JOBS = ["baker", "nurse", "pilot", "carpenter", "teacher", "chemist", "plumber", "architect", "florist", "judge"]
SENTENCES = [
    "{name}, {age}, lives in {city} and works as a {job}.",
    "Meet {name}: a {age}-year-old {job} from {city}.",
    "{name} is a {job} in {city}; {pronoun} is {age}.",
    "At {age}, {name} works as a {job} and lives in {city}.",
]


def extract(rng: random.Random) -> tuple[str, str]:
    name, age = f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.randint(19, 79)
    city, job = rng.choice(CITIES), rng.choice(JOBS)
    text = rng.choice(SENTENCES).format(name=name, age=age, city=city, job=job, pronoun=rng.choice(["she", "he", "they"]))
    return text.replace("; they is", "; they are"), json.dumps({"name": name, "age": age, "city": city, "job": job})


# -- sort_list ----------------------------------------------------------------------------------
ITEMS = ["apples", "bread", "butter", "carrots", "cheese", "coffee", "eggs", "flour", "garlic", "honey", "lemons",
         "milk", "noodles", "oats", "olive oil", "onions", "pasta", "pepper", "rice", "salt", "spinach", "sugar",
         "tea", "tomatoes", "yogurt"]


def sort_list(rng: random.Random) -> tuple[str, str]:
    items = rng.sample(ITEMS, rng.randint(6, 10))
    question = "Groceries: " + ", ".join(items) + "."
    return question, "\n".join(f"{i}. {item}" for i, item in enumerate(sorted(items), 1))


# -- compose ------------------------------------------------------------------------------------
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
OPERATIONS: dict[str, Callable[[str], str]] = {
    "reverse": lambda w: w[::-1],
    "uppercase": str.upper,
    "drop the last letter": lambda w: w[:-1],
    "double the first letter": lambda w: w[:1] + w,
    "sort the letters": lambda w: "".join(sorted(w)),
    "swap the first and last letters": lambda w: w[-1] + w[1:-1] + w[0] if len(w) > 1 else w,
}


def pseudo_word(rng: random.Random) -> str:
    """Two or three consonant-vowel syllables, e.g. "tamoku": new words, so nothing is memorised."""
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 3)))


def compose(rng: random.Random) -> tuple[str, str]:
    word = pseudo_word(rng)
    first, second = rng.sample(sorted(OPERATIONS), 2)
    return f"Word: {word}. First {first}, then {second}.", OPERATIONS[second](OPERATIONS[first](word))


TASKS: dict[str, tuple[str, Callable[[random.Random], tuple[str, str]]]] = {
    "classify": ("Answer with the department that should handle this message: billing, shipping, account, technical or sales.", classify),
    "extract": ("Extract the person as JSON with the keys name, age, city and job.", extract),
    "sort_list": ("Write the groceries as a numbered list in alphabetical order, one per line.", sort_list),
    "compose": ("Apply the two operations to the word in the order given and answer with the result only.", compose),
}


def splits(task: str, train: int, test: int = TEST_RECORDS, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``train`` training and ``test`` test records of ``task``, disjoint by question. The
    test split comes first from the generator, so it is the same whatever ``train`` is."""
    system, make = TASKS[task]
    rng = random.Random(f"{task}-{seed}")
    seen: set[str] = set()
    out: list[dict] = []
    tries = 0
    while len(out) < test + train:
        question, answer = make(rng)
        tries += 1
        if tries > 50 * (test + train):
            raise ValueError(f"{task}: only {len(out)} distinct questions; asked for {test + train}")
        if question not in seen:
            seen.add(question)
            out.append(record(question, answer, system))
    return out[test:], out[:test]
