"""The distillation flow: validate prompts, synthesize with the teacher, train the student.

Sequence-level distillation: the teacher writes text, the student learns it with the normal
fine-tuning loss, so teacher and student may use different tokenizers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith import guide
from tunesmith.advisor import recommend
from tunesmith.datasets import DataError, DatasetKind, validate_dataset
from tunesmith.errors import TunesmithError
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.models.registry import resolve_model
from tunesmith.training.config import Method, Precision, TrainConfig, check_settings, setting, setting_of

if TYPE_CHECKING:  # the teacher and the loop load torch: only when a distillation runs
    from tunesmith.distillation.teachers import Teacher
    from tunesmith.training import StepInfo


class DistillationError(TunesmithError, ValueError):
    pass


@dataclass
class DistillConfig:
    """Everything ``tunesmith distill`` needs besides the teacher; checks live in ``__post_init__``."""

    data: Path = setting(help="Prompts (JSONL); records that carry an answer are kept as labelled examples.")
    output: Path = setting(help="Result folder: synthesis/, student/ and distillation_report.json.")
    student: str = setting("micro", help="The model to train (tier, hosted id or path).")
    max_response_length: int = setting(
        guide.DEFAULT_RESPONSE_TOKENS, minimum=1, maximum=guide.MAX_RESPONSE_TOKENS, help="Teacher answer budget (tokens)."
    )
    """Longer answers are rejected as cut off."""
    hyperparameters: Hyperparameters | None = None
    """None: the advisor's values for the synthetic dataset and the student tier."""
    duplication: int | None = None
    """None: the advised factor with advised hyperparameters, else 1."""
    method: Method = setting_of(TrainConfig, "method")
    device: str = setting_of(TrainConfig, "device")
    """The student's device; a local teacher runs there too."""
    precision: Precision = setting_of(TrainConfig, "precision")
    seed: int = setting_of(TrainConfig, "seed")
    resume: bool = setting(False, help="Continue an interrupted distillation in --output (answered prompts are kept).")

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        check_settings(self)


def check_prompts(config: DistillConfig) -> None:
    report = validate_dataset(config.data, kind=DatasetKind.DISTILLATION)
    if not report.valid:
        raise DataError(report)


def run_distillation(
    config: DistillConfig, teacher: Teacher, on_step: Callable[[StepInfo], None] | None = None,
    on_answer: Callable[[int], None] | None = None, stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Synthesize, then train the student; the report (also written to
    ``distillation_report.json`` when the student finished). ``stop()`` ends the synthesis with
    ``InterruptedError`` or the training at a checkpoint (``report["stopped"]``); ``on_start``
    is :func:`tunesmith.training.finetune`'s."""
    from tunesmith.distillation.synthesis import SYNTHETIC, synthesize
    from tunesmith.training import finetune

    check_prompts(config)
    source = resolve_model(config.student)
    synthesis_folder = config.output / "synthesis"
    synthesis = synthesize(config.data, teacher, synthesis_folder, config.max_response_length, on_done=on_answer, stop=stop)
    if synthesis.training_records < guide.MIN_RECORDS:
        raise DistillationError(
            f"only {synthesis.training_records} usable training records after synthesis (at least {guide.MIN_RECORDS} needed); "
            f"rejected: {dict(synthesis.rejected)}; see {synthesis_folder / 'rejected.jsonl'}"
        )
    advice = recommend(synthesis.training_records, source.tier)
    hyperparameters = config.hyperparameters or advice.hyperparameters
    duplication = config.duplication or (advice.plan.duplication_factor if config.hyperparameters is None else 1)
    train_config = TrainConfig(
        data=synthesis_folder / SYNTHETIC, output=config.output / "student", model=config.student,
        hyperparameters=hyperparameters, hyperparameters_sent=hyperparameters.to_wire(), duplication=duplication,
        method=config.method, device=config.device, precision=config.precision, seed=config.seed, resume=config.resume,
    )
    result = finetune(train_config, on_step, stop=stop, on_start=on_start)
    report = {
        "teacher": teacher.name, "student": config.student, "synthesis": synthesis.as_dict(), "stopped": result.stopped,
        "hyperParameters": hyperparameters.to_wire(), "duplicationFactor": duplication, "warnings": result.warnings,
    }
    if result.stopped:
        return {**report, "steps": result.state.step, "totalSteps": result.plan.total_steps}
    report.update(training=result.manifest["result"], studentModel=str(config.output / "student" / "model"))
    (config.output / "distillation_report.json").write_text(json.dumps(report, indent=2))
    return report
