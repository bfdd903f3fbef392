"""Helpers shared by the tests: small datasets written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def conversation(question: str, answer: str | None = None, system: str | None = None) -> dict:
    record: dict = {"schemaVersion": "bedrock-conversation-2024"}
    if system:
        record["system"] = [{"text": system}]
    record["messages"] = [{"role": "user", "content": [{"text": question}]}]
    if answer is not None:
        record["messages"].append({"role": "assistant", "content": [{"text": answer}]})
    return record


def arithmetic(n: int, start: int = 0) -> list[dict]:
    """n distinct, valid question/answer records."""
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(start, start + n)]


def write_jsonl(path: Path, records: list, newline: str = "\n") -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder so problem lines show short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
