"""What the linter and statistics need from one valid record, whatever its kind."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


def digest(text: str) -> bytes:
    """A short, stable fingerprint: 16 bytes per record keeps duplicate checks small."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


@dataclass(frozen=True)
class RecordView:
    """A valid record reduced to fingerprints and sizes."""

    text: str
    """All of the record's text, joined; used for lengths and vocabulary."""
    messages: int
    """Number of messages (0 for continued pre-training records)."""
    prompt_key: bytes
    """Fingerprint of everything before the answer (system, earlier turns, the prompt)."""
    answer_key: bytes | None
    """Fingerprint of the final assistant answer; None for prompts and plain text."""

    @property
    def record_key(self) -> bytes:
        return digest(repr((self.prompt_key, self.answer_key)))

    @property
    def characters(self) -> int:
        return len(self.text)

    @property
    def labelled(self) -> bool:
        return self.answer_key is not None

    @classmethod
    def of_conversation(
        cls,
        system: list[str],
        prompt_turns: list[tuple[str, list[str]]],
        answer: str | None,
        message_count: int,
    ) -> RecordView:
        prompt = json.dumps([system, prompt_turns], ensure_ascii=False)
        texts = [*system, *(t for _, texts in prompt_turns for t in texts)]
        if answer is not None:
            texts.append(answer)
        return cls(
            text="\n".join(texts),
            messages=message_count,
            prompt_key=digest(prompt),
            answer_key=digest(answer) if answer is not None else None,
        )

    @classmethod
    def of_text(cls, text: str) -> RecordView:
        return cls(text=text, messages=0, prompt_key=digest(text), answer_key=None)
