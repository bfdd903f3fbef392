"""The quickstart's task: turn a customer message into a JSON ticket.

Narrow, deterministic and checkable: the answer is computed by code from the message
(the order id it quotes, and the issue category its wording implies), so exact match is a
fair score. A base instruct model answers in prose or guesses the format; a fine-tuned
one learns the exact JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

SYSTEM = "Turn the customer's message into a JSON ticket with the order id and the issue category."

ISSUES = {
    "damaged": ["arrived with the {part} cracked", "came broken", "was smashed in the box", "has a dented {part}",
                "arrived damaged", "showed up with a shattered {part}"],
    "late": ["still hasn't arrived", "is late", "was due last week and never came", "is stuck in transit",
             "hasn't been delivered yet", "is taking forever to arrive"],
    "wrong_item": ["is the wrong size", "came in the wrong color", "is not what I ordered",
                   "turned out to be a different model", "had the wrong item inside"],
    "refund": ["should be refunded to my card", "needs a refund please", "- I want my money back",
               "must be refunded, I returned it", "has to be refunded"],
    "cancel": ["should be cancelled", "- please cancel it", "is no longer needed, cancel it",
               "must be cancelled before it ships", "- I changed my mind, cancel it"],
}
PRODUCTS = ["lamp", "kettle", "backpack", "monitor", "chair", "blender", "jacket", "phone case", "desk",
            "headphones", "toaster", "rug", "mirror", "speaker", "bike helmet"]
PARTS = ["screen", "lid", "handle", "corner", "base", "cover"]
TEMPLATES = [
    "Hi, my {product} (order {order}) {issue}.",
    "Order {order}: the {product} {issue}.",
    "Hello! The {product} from order {order} {issue}. Thanks",
    "My order {order} {issue}. It was a {product}.",
    "Re order {order} - {product} {issue}!",
    "The {product} I bought, order {order}, {issue}.",
]


def make_example(rng: random.Random) -> tuple[str, str]:
    category = rng.choice(sorted(ISSUES))
    order = f"{rng.choice('ABCDEFGHJKMNPQRSTUVWXYZ')}{rng.randint(1000, 9999)}"
    issue = rng.choice(ISSUES[category]).format(part=rng.choice(PARTS))
    message = rng.choice(TEMPLATES).format(product=rng.choice(PRODUCTS), order=order, issue=issue)
    answer = json.dumps({"order": order, "issue": category})
    return message, answer


def record(message: str, answer: str, system: str = SYSTEM) -> dict:
    return {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": system}],
        "messages": [
            {"role": "user", "content": [{"text": message}]},
            {"role": "assistant", "content": [{"text": answer}]},
        ],
    }


def make_splits(train: int, test: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Disjoint train and test splits: no test message occurs in training."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[dict] = []

    def fresh() -> Iterator[dict]:
        while True:
            message, answer = make_example(rng)
            if message not in seen:
                seen.add(message)
                yield record(message, answer)

    source = fresh()
    out = [next(source) for _ in range(train + test)]
    return out[:train], out[train:]
