"""Distill or fine-tune? Measure, then apply the guide's rules (thresholds in ``guide.py``).

Measured on a held-out part of labelled data: the teacher's score, the student's base
score, and the student after a short fine-tune on the rest (one epoch, no duplication: the
time bound), plus each model's generation speed and size. The score is greedy exact match
(ROUGE-L is reported beside it).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import guide
from tunesmith.advisor import recommend
from tunesmith.distillation.distill import DistillationError
from tunesmith.distillation.teachers import Teacher
from tunesmith.evaluation.evaluate import score_predictions
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import StepInfo, TrainConfig, finetune
from tunesmith.training.examples import chat_messages, read_records


@dataclass
class Measurement:
    name: str
    exact_match: float
    rouge_l: float
    tokens_per_second: float
    parameters: int | None


@dataclass
class Decision:
    recommendation: str
    """``distill`` or ``fine-tune``."""
    rule: guide.GuideRule
    explanation: str
    teacher: Measurement
    student_base: Measurement
    student_fine_tuned: Measurement
    holdout: int
    train_records: int
    fine_tune_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "recommendation": self.recommendation, "rule": self.rule.id, "guide": self.rule.says,
            "explanation": self.explanation, "holdoutRecords": self.holdout, "trainRecords": self.train_records,
            "fineTuneSeconds": round(self.fine_tune_seconds, 1),
            "measurements": [asdict(m) for m in (self.teacher, self.student_base, self.student_fine_tuned)],
        }


def split(records: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(rest, holdout): a deterministic shuffle; the guide's share held out, at least its minimum."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    size = max(guide.DECIDE_MIN_HOLDOUT, math.ceil(len(records) * guide.DECIDE_HOLDOUT_FRACTION))
    if len(records) - size < guide.MIN_RECORDS:
        raise DistillationError(f"{len(records)} labelled records are too few: need {size} to hold out and {guide.MIN_RECORDS} to train")
    held = set(order[:size])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def parameter_count(teacher: Teacher) -> int | None:
    model = getattr(teacher, "model", None)
    return sum(p.numel() for p in model.parameters()) if model is not None else None


def measure(teacher: Teacher, holdout: list[dict], max_tokens: int) -> Measurement:
    chats = [chat_messages(r)[:-1] for r in holdout]
    references = [chat_messages(r)[-1]["content"] for r in holdout]
    started = time.perf_counter()
    completions = teacher.answer(chats, max_tokens)
    seconds = time.perf_counter() - started
    exact, rouge, _ = score_predictions(references, [c.text for c in completions])
    tokens = sum(c.output_tokens for c in completions)
    speed = round(tokens / seconds, 1) if seconds else 0.0
    return Measurement(teacher.name, round(exact, 4), round(rouge, 4), speed, parameter_count(teacher))


def apply_rules(teacher: Measurement, base: Measurement, tuned: Measurement) -> tuple[str, guide.GuideRule, str]:
    best_student = max(base.exact_match, tuned.exact_match)
    speed = f"{tuned.tokens_per_second / teacher.tokens_per_second:.1f}x the teacher's speed" if teacher.tokens_per_second else "faster"
    if teacher.exact_match < guide.POOR_TEACHER_SCORE:
        progress = (
            f"one epoch on the labels already lifts the student from {base.exact_match:.0%} to {tuned.exact_match:.0%}"
            if tuned.exact_match > base.exact_match
            else f"one epoch on the labels has not moved the student yet ({tuned.exact_match:.0%}): train longer (tunesmith train --advised)"
        )
        return "fine-tune", guide.FINE_TUNE_INTELLIGENCE_GAP, (
            f"the teacher scores only {teacher.exact_match:.0%} (below {guide.POOR_TEACHER_SCORE:.0%}): its answers would teach "
            f"mistakes; {progress}"
        )
    if best_student >= teacher.exact_match - guide.CLEAR_MARGIN:
        return "fine-tune", guide.FINE_TUNE_NARROW_DOMAIN, (
            f"a short fine-tune on the labels already brings the student to {best_student:.0%}, within "
            f"{guide.CLEAR_MARGIN:.0%} of the teacher's {teacher.exact_match:.0%}: the labels teach the task; no teacher needed"
        )
    if teacher.exact_match >= guide.CAPABLE_TEACHER_SCORE:
        return "distill", guide.DISTILL_FOR_LATENCY, (
            f"the teacher scores {teacher.exact_match:.0%}, the student {best_student:.0%} even after fine-tuning; the student runs at "
            f"{speed}: distil the teacher's answers (unlabelled prompts are enough) to get its accuracy at the student's cost"
        )
    return "distill", guide.DISTILL_FOR_LATENCY, (
        f"the teacher ({teacher.exact_match:.0%}) beats the student ({best_student:.0%}) but is not highly capable "
        f"(below {guide.CAPABLE_TEACHER_SCORE:.0%}): distil, and check the synthetic answers (tunesmith refine) first"
    )


def decide(
    data: Path, teacher: Teacher, student: str, workdir: Path, max_tokens: int = 64,
    student_teacher: Callable[[str], Teacher] | None = None, on_step: Callable[[StepInfo], None] | None = None,
    precision: str = "auto", stop: Callable[[], bool] | None = None, device: str = "auto",
) -> Decision:
    """Measure and decide. ``student_teacher(spec)`` loads a model as a Teacher (for scoring);
    by default the student is scored and fine-tuned on ``device``.

    Raises ``InterruptedError`` when ``stop()`` (or SIGINT/SIGTERM) ends the fine-tune early:
    a half-trained student would be scored as if it were done.
    """
    from tunesmith.distillation.teachers import LocalTeacher
    from tunesmith.models.registry import resolve_model

    load = student_teacher or (lambda spec: LocalTeacher.load(spec, device=device))
    records = list(read_records(data))
    rest, holdout = split(records)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rest))
    teacher_m = measure(teacher, holdout, max_tokens)
    base_m = measure(load(student), holdout, max_tokens)
    advice = recommend(len(rest), resolve_model(student).tier)
    config = TrainConfig(
        data=workdir / "train.jsonl", output=workdir / "student", model=student, device=device, precision=precision,
        hyperparameters=Hyperparameters(1, advice.hyperparameters.learning_rate, advice.hyperparameters.learning_rate_warmup_steps),
    )
    result = finetune(config, on_step, stop=stop)
    if result.stopped:
        raise InterruptedError(
            f"the student's fine-tune stopped at step {result.state.step} of {result.plan.total_steps}: no decision "
            f"without it; run again after removing {workdir / 'student'}"
        )
    tuned_m = measure(load(str(workdir / "student")), holdout, max_tokens)
    base_m.name, tuned_m.name = f"{student} (base)", f"{student} (fine-tuned 1 epoch)"
    recommendation, rule, explanation = apply_rules(teacher_m, base_m, tuned_m)
    return Decision(recommendation, rule, explanation, teacher_m, base_m, tuned_m, len(holdout), len(rest), result.state.elapsed_s)
