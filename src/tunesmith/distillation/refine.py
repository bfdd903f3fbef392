"""Data refinement: deterministic clean-up, then a model rewrites answers (or prompts).

1. Clean-up, no model: whitespace normalised in every text block, exact duplicates and
   empty answers dropped, conflicting labels (one prompt, different answers) flagged.
2. Rewriting: the model gets the instructions and one record at a time and returns the
   rewritten answer (or prompt). Every rewritten record is validated; a rewrite that is
   empty, refused, cut off or invalid is discarded and the original kept.
3. A report: counts per kind of change and a before/after line per record.
The input file is never modified; the output is written only when complete.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith.datasets import ProblemLog
from tunesmith.datasets.conversation import check_conversation
from tunesmith.distillation.synthesis import is_refusal
from tunesmith.distillation.teachers import Teacher
from tunesmith.files import atomic_write_text
from tunesmith.training.examples import read_records

Target = Literal["answers", "prompts"]
DEFAULT_INSTRUCTIONS = "Fix spelling, grammar and formatting. Keep the meaning, the facts and the length."
_SPACES = re.compile(r"[ \t]+")


@dataclass
class RefineReport:
    records_in: int = 0
    records_out: int = 0
    changes: Counter = field(default_factory=Counter)
    conflicts: list[list[int]] = field(default_factory=list)
    """Groups of line numbers sharing a prompt with different answers (kept, flagged)."""

    def as_dict(self) -> dict[str, Any]:
        return {"recordsIn": self.records_in, "recordsOut": self.records_out, "changes": dict(self.changes), "conflictingLabels": self.conflicts}


def normalise(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _clean(record: dict) -> tuple[dict, bool]:
    changed = False

    def fix(block: dict) -> dict:
        nonlocal changed
        text = normalise(block["text"])
        changed |= text != block["text"]
        return {**block, "text": text}

    cleaned = dict(record)
    if "system" in record:
        cleaned["system"] = [fix(b) for b in record["system"]]
    cleaned["messages"] = [{**m, "content": [fix(b) for b in m["content"]]} for m in record["messages"]]
    return cleaned, changed


def _text(message: dict) -> str:
    return "\n".join(b["text"] for b in message["content"])


def _rewrite_chat(record: dict, instructions: str, target: Target) -> list[dict[str, str]]:
    *context, last = record["messages"]
    prompt = _text(context[-1]) if context else ""
    if target == "answers":
        body = f"Question:\n{prompt}\n\nAnswer:\n{_text(last)}\n\nRewrite the answer. Reply with the rewritten answer only."
    else:
        body = f"Request:\n{prompt}\n\nRewrite the request. Reply with the rewritten request only."
    return [{"role": "system", "content": instructions}, {"role": "user", "content": body}]


def refine(
    data: Path, output: Path, teacher: Teacher | None, instructions: str = DEFAULT_INSTRUCTIONS, target: Target = "answers",
    force: bool = False, max_tokens: int = 512, batch_size: int = 16, on_done: Callable[[int], None] | None = None,
) -> RefineReport:
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists: pass --force to overwrite it")
    if output.resolve() == Path(data).resolve():
        raise FileExistsError(f"{output} is the input file: the input is never modified; choose another output")
    report = RefineReport()
    kept: list[tuple[int, dict, dict]] = []  # (line, original, current)
    seen: set[str] = set()
    answers_by_prompt: dict[str, dict[str, int]] = defaultdict(dict)
    for line, record in enumerate(read_records(data), start=1):
        report.records_in += 1
        cleaned, changed = _clean(record)
        report.changes["whitespace normalised"] += changed
        if not _text(cleaned["messages"][-1]):
            report.changes["empty answer dropped"] += 1
            continue
        key = json.dumps(cleaned, sort_keys=True)
        if key in seen:
            report.changes["exact duplicate dropped"] += 1
            continue
        seen.add(key)
        prompt = json.dumps([cleaned.get("system"), cleaned["messages"][:-1]], sort_keys=True)
        answers_by_prompt[prompt].setdefault(_text(cleaned["messages"][-1]), line)
        kept.append((line, record, cleaned))
    report.conflicts = [sorted(lines.values()) for lines in answers_by_prompt.values() if len(lines) > 1]
    report.changes["conflicting labels flagged"] = sum(len(group) for group in report.conflicts)

    final = [current for _, _, current in kept]
    if teacher is not None:
        completions = []
        for start in range(0, len(final), batch_size):
            chunk = final[start : start + batch_size]
            completions += teacher.answer([_rewrite_chat(r, instructions, target) for r in chunk], max_tokens, on_done)
        for i, completion in enumerate(completions):
            final[i] = _apply(final[i], completion, target, report, kept[i][0])
    report.records_out = len(final)
    rows = [{"line": line, "before": original, "after": after, "changed": original != after} for (line, original, _), after in zip(kept, final)]
    atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in final))
    atomic_write_text(output.with_name(output.stem + ".refine-report.json"), json.dumps(report.as_dict(), indent=2))
    atomic_write_text(output.with_name(output.stem + ".refine-changes.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return report


def _apply(record: dict, completion, target: Target, report: RefineReport, line: int) -> dict:
    text = completion.text.strip()
    if not text or is_refusal(text) or completion.stop_reason == "max_tokens":
        report.changes["rewrite discarded (empty, refused or cut off)"] += 1
        return record
    messages = [dict(m) for m in record["messages"]]
    index = len(messages) - 1 if target == "answers" else len(messages) - 2
    if _text(messages[index]) == text:
        report.changes["rewrite unchanged"] += 1
        return record
    messages[index] = {**messages[index], "content": [{"text": text}]}
    rewritten = {**record, "messages": messages}
    if check_conversation(rewritten, "rewrite", line, ProblemLog(), allow_prompt_only=False) is None:
        report.changes["rewrite discarded (invalid record)"] += 1
        return record
    report.changes[f"{target[:-1]} rewritten"] += 1
    return rewritten
