"""The quickstart's task: turn a customer message into a JSON ticket.

Narrow, deterministic and checkable: the answer is computed by code from the message (the
order id it quotes, and which of five issue words it uses), so exact match is a fair score.
The base instruct model answers in prose or in a JSON of its own; the fine-tuned one learns
the exact ticket. The task is built to be learned in few optimizer steps, so that the
quickstart can train on a laptop CPU in a few minutes: short messages, each naming its issue
by one plain word, and the ticket laid out as ``json.dumps(..., indent=2)``, the layout the
base model already leans to when it writes JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

SYSTEM = "Write the ticket as JSON with the keys order and issue."
"""Short on purpose: without a system prompt SmolLM2's chat template inserts its own, longer one."""

ISSUES = {
    "broken": ["arrived broken", "is broken", "came broken", "was broken"],
    "late": ["is late", "arrived late", "came late", "was late"],
    "wrong": ["is the wrong size", "is the wrong color", "is the wrong model", "is wrong"],
    "return": ["- I want to return it", "- I'd like to return it", "- I need to return it", "- please let me return it"],
    "cancel": ["- I want to cancel", "- I'd like to cancel", "- I need to cancel", "- please cancel"],
}
"""Five issue categories, each named by a word its messages use (one token, as the answer spells it too)."""
PRODUCTS = ["lamp", "kettle", "backpack", "monitor", "chair", "blender", "jacket", "phone case", "desk",
            "headphones", "toaster", "rug", "mirror", "speaker", "bike helmet"]
TEMPLATES = [
    "Order {order}: the {product} {issue}.",
    "My {product} (order {order}) {issue}.",
    "The {product} from order {order} {issue}.",
    "Re order {order}, {product} {issue}.",
]


def make_example(rng: random.Random) -> tuple[str, str]:
    category = rng.choice(sorted(ISSUES))
    order = f"{rng.choice('ABCDEFGHJKMNPQRSTUVWXYZ')}{rng.randint(1000, 9999)}"
    issue = rng.choice(ISSUES[category])
    message = rng.choice(TEMPLATES).format(product=rng.choice(PRODUCTS), order=order, issue=issue)
    answer = json.dumps({"order": order, "issue": category}, indent=2)
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


def make_splits(*sizes: int, seed: int = 7) -> list[list[dict]]:
    """Disjoint splits of the given sizes (training, validation, test, ...): no message occurs
    in two of them, nor twice in one."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def fresh() -> Iterator[dict]:
        while True:
            message, answer = make_example(rng)
            if message not in seen:
                seen.add(message)
                yield record(message, answer)

    source = fresh()
    return [[next(source) for _ in range(size)] for size in sizes]
