"""The teacher phase of distillation: answer every prompt once, resumably, and sort the results.

Answers are appended to ``teacher_answers.jsonl`` batch by batch (flushed and synced), so a
crash or a stop does not redo prompts already answered: the next run skips them. Then each
prompt-only record with an acceptable answer becomes a training record; records that
already carry an answer are kept as labelled examples, and the teacher's answers to them
measure how well it agrees with the labels. Every rejected prompt is listed with its reason.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.datasets import ProblemLog
from tunesmith.datasets.conversation import check_conversation
from tunesmith.distillation.teachers import Teacher
from tunesmith.evaluation.evaluate import score_predictions
from tunesmith.files import atomic_write_text
from tunesmith.training.examples import chat_messages, read_records

ANSWERS = "teacher_answers.jsonl"
SYNTHETIC = "synthetic.jsonl"
REPORT = "prompt_report.json"
REJECTED = "rejected.jsonl"
REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i am unable", "i'm unable", "i apologize")
"""How an answer that declines the task opens (lower case); such answers are never learned."""


def is_refusal(text: str) -> bool:
    """Whether an answer declines the task, e.g. "I'm sorry, I can't help with that."."""
    return text.strip().lower().startswith(REFUSALS)


@dataclass
class SynthesisReport:
    prompts: int
    labelled: int
    accepted: int
    rejected: Counter = field(default_factory=Counter)
    answered_now: int = 0
    reused: int = 0
    """Prompts answered by an earlier, interrupted run."""
    seconds: float = 0.0
    output_tokens: int = 0
    agreement: dict[str, float] | None = None
    """Teacher vs labels on labelled records: exact match and ROUGE-L."""

    @property
    def training_records(self) -> int:
        return self.accepted + self.labelled

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts, "labelled": self.labelled, "accepted": self.accepted,
            "rejected": dict(self.rejected), "trainingRecords": self.training_records,
            "answeredNow": self.answered_now, "reusedFromEarlierRun": self.reused,
            "teacherSeconds": round(self.seconds, 1),
            "teacherTokensPerSecond": round(self.output_tokens / self.seconds, 1) if self.seconds else None,
            "teacherAgreementWithLabels": self.agreement,
        }


def _split(record: dict) -> tuple[list[dict[str, str]], str | None]:
    chat = chat_messages(record)
    if chat[-1]["role"] == "assistant":
        return chat[:-1], chat[-1]["content"]
    return chat, None


def _read_answers(path: Path) -> dict[int, dict]:
    answers: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash: that prompt is answered again
            answers[row["index"]] = row
    return answers


def rejection(answer: dict, prompt_key: str, seen: set[str]) -> str | None:
    text = answer["text"].strip()
    if not text:
        return "empty answer"
    if is_refusal(text):
        return "refused"
    if answer["stopReason"] == "max_tokens":
        return "cut off at the maximum response length"
    if prompt_key in seen:
        return "duplicate prompt"
    return None


def synthesize(
    data: Path, teacher: Teacher, folder: Path, max_tokens: int = 512, batch_size: int = 32,
    on_done: Callable[[int], None] | None = None, stop: Callable[[], bool] = lambda: False,
) -> SynthesisReport:
    """Answer the prompts of ``data`` (validated distillation records) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = list(read_records(data))
    split = [_split(r) for r in records]
    answers_path = folder / ANSWERS
    answers = _read_answers(answers_path)
    reused = len(answers)
    unique: dict[str, int] = {}
    for index, (chat, _) in enumerate(split):
        unique.setdefault(json.dumps(chat), index)
    todo = [i for i in unique.values() if i not in answers]
    started = time.perf_counter()
    output_tokens = 0
    with answers_path.open("a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            if stop():
                raise InterruptedError(f"synthesis stopped with {len(todo) - start} prompts left; run again to continue")
            chunk = todo[start : start + batch_size]
            completions = teacher.answer([split[i][0] for i in chunk], max_tokens, on_done)
            for index, completion in zip(chunk, completions):
                row = {"index": index, "text": completion.text, "stopReason": completion.stop_reason, "outputTokens": completion.output_tokens}
                answers[index] = row
                output_tokens += completion.output_tokens
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
    report = SynthesisReport(prompts=sum(1 for _, label in split if label is None), labelled=sum(1 for _, label in split if label is not None), accepted=0)
    report.answered_now, report.reused = len(todo), reused
    report.seconds, report.output_tokens = time.perf_counter() - started, output_tokens
    _write_outputs(records, split, answers, unique, folder, report)
    return report


def _write_outputs(records, split, answers, unique, folder: Path, report: SynthesisReport) -> None:
    seen: set[str] = set()
    kept, rejected = [], []
    references, predictions = [], []
    for index, (record, (chat, label)) in enumerate(zip(records, split)):
        key = json.dumps(chat)
        answer = answers.get(unique[key])
        if label is not None:
            kept.append(record)
            if answer is not None:
                references.append(label)
                predictions.append(answer["text"])
            continue
        reason = rejection(answer, key, seen) if answer else "not answered"
        if reason is None:
            built = {**record, "messages": record["messages"] + [{"role": "assistant", "content": [{"text": answer["text"]}]}]}
            if check_conversation(built, str(folder / SYNTHETIC), index + 1, ProblemLog(), allow_prompt_only=False) is None:
                reason = "invalid record"
            else:
                kept.append(built)
                seen.add(key)
        if reason is not None:
            report.rejected[reason] += 1
            rejected.append({"line": index + 1, "reason": reason, "prompt": chat[-1]["content"], "answer": (answer or {}).get("text")})
    report.accepted = len(kept) - report.labelled
    if references:
        exact, rouge, _ = score_predictions(references, predictions)
        report.agreement = {"exactMatch": round(exact, 4), "rougeL": round(rouge, 4), "records": len(references)}
    atomic_write_text(folder / SYNTHETIC, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    atomic_write_text(folder / REJECTED, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))
    atomic_write_text(folder / REPORT, json.dumps(report.as_dict(), indent=2))
