"""Make the example dataset: order-delivery questions whose answers are computed by code.

    python examples/make_orders.py examples/

Deterministic (fixed seed): 240 training and 40 validation records in the
bedrock-conversation-2024 format, answering "when will my order arrive?" by adding
business days (weekends skipped) to the ship date.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from pathlib import Path

SYSTEM = "You are the order-status assistant of a small online shop. Answer in one sentence."
SERVICES = {"express": 1, "priority": 2, "standard": 5, "economy": 8}
QUESTIONS = [
    "Order {order} shipped on {date} with {service} shipping. When will it arrive?",
    "My order {order} went out {date} ({service}). What day should I expect it?",
    "When does order {order} arrive? It was shipped {service} on {date}.",
]


def add_business_days(start: dt.date, days: int) -> dt.date:
    current = start
    while days:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def record(rng: random.Random) -> dict:
    order = f"#{rng.choice('ABCDEFGHJK')}{rng.randint(1000, 9999)}"
    shipped = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randint(0, 300))
    while shipped.weekday() >= 5:
        shipped += dt.timedelta(days=1)
    service = rng.choice(list(SERVICES))
    arrival = add_business_days(shipped, SERVICES[service])
    question = rng.choice(QUESTIONS).format(order=order, date=shipped.isoformat(), service=service)
    answer = f"Order {order} should arrive on {arrival:%A}, {arrival.isoformat()}."
    return {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": SYSTEM}],
        "messages": [
            {"role": "user", "content": [{"text": question}]},
            {"role": "assistant", "content": [{"text": answer}]},
        ],
    }


def main(folder: Path) -> None:
    rng = random.Random(20261124)
    for name, count in (("orders.train.jsonl", 240), ("orders.valid.jsonl", 40)):
        with (folder / name).open("w", encoding="utf-8") as out:
            for _ in range(count):
                out.write(json.dumps(record(rng)) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples"))
