"""Rules for ``bedrock-conversation-2024`` records (reference section 1).

Used for fine-tuning (every record ends with the assistant's answer) and for distillation
(a record may stop after a user turn: a prompt for the teacher to answer).
"""

from __future__ import annotations

from typing import Any

from tunesmith.datasets.jsonl import json_kind, json_repr
from tunesmith.datasets.problems import ProblemLog
from tunesmith.datasets.record_view import RecordView

SCHEMA_VERSION = "bedrock-conversation-2024"
ROLES = ("user", "assistant")
RESERVED_PREFIXES = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
"""A user or system prompt must not start with these: the hosted prompt format uses them."""
MEDIA_BLOCKS = ("image", "video", "document", "audio")
TOP_LEVEL_KEYS = ("schemaVersion", "system", "messages")


class _Checker:
    """Checks one record, logging every problem; ``ok`` stays True only if none was an error."""

    def __init__(self, file: str, line: int, log: ProblemLog):
        self.file, self.line, self.log = file, line, log
        self.ok = True

    def error(self, where: str, message: str) -> None:
        self.ok = False
        self.log.error(self.file, self.line, where, message)

    def warning(self, where: str, message: str) -> None:
        self.log.warning(self.file, self.line, where, message)


def _texts(checker: _Checker, where: str, blocks: Any, check_reserved: bool) -> list[str]:
    """Check an array of content blocks; return its texts."""
    if not isinstance(blocks, list):
        hint = ' like [{"text": "..."}]'
        checker.error(where, f"expected an array of content blocks{hint}, got {json_kind(blocks)}")
        return []
    if not blocks:
        checker.error(where, 'is empty: give at least one {"text": "..."} block')
        return []
    texts = []
    for j, block in enumerate(blocks):
        at = f"{where}[{j}]"
        if not isinstance(block, dict):
            checker.error(at, f'expected a content block {{"text": "..."}}, got {json_kind(block)}')
            continue
        media = [key for key in MEDIA_BLOCKS if key in block]
        if media:
            checker.error(at, f"{media[0]} blocks are not supported: this build of tunesmith is text-only")
            continue
        if "text" not in block:
            keys = ", ".join(f'"{k}"' for k in block) or "no keys"
            checker.error(at, f'unknown content block ({keys}); expected {{"text": "..."}}')
            continue
        text = block["text"]
        if not isinstance(text, str):
            checker.error(f"{at}.text", f"expected a string, got {json_kind(text)}")
            continue
        if not text.strip():
            checker.error(f"{at}.text", "is empty")
            continue
        extra = [k for k in block if k != "text"]
        if extra:
            checker.warning(at, f'unknown field "{extra[0]}" in a text block is ignored')
        if check_reserved:
            reserved = next((p for p in RESERVED_PREFIXES if text.lstrip().startswith(p)), None)
            if reserved:
                checker.error(
                    f"{at}.text", f'starts with the reserved word "{reserved}": the prompt format reserves it; rephrase'
                )
        texts.append(text)
    return texts


def check_conversation(
    record: dict[str, Any], file: str, line: int, log: ProblemLog, *, allow_prompt_only: bool
) -> RecordView | None:
    """Validate one conversation record; return its view, or None when it has an error."""
    checker = _Checker(file, line, log)
    if "messages" not in record and "text" in record:
        checker.error("messages", 'missing; this looks like a continued pre-training record ({"text": ...}): use --kind pretraining')
        return None
    for key in record:
        if key not in TOP_LEVEL_KEYS:
            checker.warning(key, f'unknown field "{key}" is ignored (known: {", ".join(TOP_LEVEL_KEYS)})')
    if "schemaVersion" in record and record["schemaVersion"] != SCHEMA_VERSION:
        checker.error("schemaVersion", f"{json_repr(record['schemaVersion'])} is not \"{SCHEMA_VERSION}\"")
    system_texts: list[str] = []
    if "system" in record:
        system_texts = _texts(checker, "system", record["system"], check_reserved=True)

    messages = record.get("messages")
    if messages is None:
        checker.error("messages", "missing: a record needs an array of user/assistant messages")
        return None
    if not isinstance(messages, list):
        checker.error("messages", f"expected an array of messages, got {json_kind(messages)}")
        return None
    minimum = 1 if allow_prompt_only else 2
    if len(messages) < minimum:
        need = "a user prompt" if allow_prompt_only else "a user turn and the assistant's answer"
        checker.error("messages", f"has {len(messages)} message(s); at least {minimum} ({need}) are needed")
        return None

    turns: list[tuple[str, list[str]]] = []
    previous_role = None
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            checker.error(at, f"expected a message object, got {json_kind(message)}")
            continue
        for key in message:
            if key not in ("role", "content"):
                checker.warning(f"{at}.{key}", f'unknown field "{key}" is ignored')
        role = message.get("role")
        if "role" not in message:
            checker.error(f"{at}.role", 'missing: "user" or "assistant"')
        elif role not in ROLES:
            checker.error(f"{at}.role", f'{json_repr(role)} is not "user" or "assistant"')
        elif i == 0 and role != "user":
            checker.error(f"{at}.role", f'the first message must be from "user", got "{role}"')
        elif role == previous_role:
            checker.error(f"{at}.role", f'"{role}" follows another "{role}" message: roles must alternate')
        if "content" not in message:
            checker.error(f"{at}.content", 'missing: a list of {"text": "..."} blocks')
            texts = []
        else:
            texts = _texts(checker, f"{at}.content", message["content"], check_reserved=role == "user")
        previous_role = role if role in ROLES else None
        turns.append((role, texts))

    last_role = messages[-1].get("role") if isinstance(messages[-1], dict) else None
    if last_role == "user" and not allow_prompt_only:
        checker.error(
            f"messages[{len(messages) - 1}].role",
            'the last message must be the "assistant" answer to learn, got "user"',
        )
    if not checker.ok:
        return None
    labelled = last_role == "assistant"
    prompt_turns = turns[:-1] if labelled else turns
    answer = "\n".join(turns[-1][1]) if labelled else None
    return RecordView.of_conversation(system_texts, prompt_turns, answer, message_count=len(messages))
