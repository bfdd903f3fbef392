"""Rules for continued pre-training records: ``{"text": "..."}``."""

from __future__ import annotations

from typing import Any

from tunesmith.datasets.jsonl import json_kind
from tunesmith.datasets.problems import ProblemLog
from tunesmith.datasets.record_view import RecordView


def check_text_record(record: dict[str, Any], file: str, line: int, log: ProblemLog) -> RecordView | None:
    """Validate one continued pre-training record; return its view, or None on error."""
    if "text" not in record:
        if "input" in record:
            hint = ': found "input", which older models used; rename it to "text"'
        elif "messages" in record:
            hint = ": this looks like a conversation record; use --kind fine-tuning"
        else:
            hint = ': a continued pre-training record is {"text": "..."}'
        log.error(file, line, "text", f"missing{hint}")
        return None
    text = record["text"]
    if not isinstance(text, str):
        log.error(file, line, "text", f"expected a string, got {json_kind(text)}")
        return None
    if not text.strip():
        log.error(file, line, "text", "is empty")
        return None
    for key in record:
        if key != "text":
            log.warning(file, line, key, f'unknown field "{key}" is ignored')
    return RecordView.of_text(text)
