"""The distillation flow: validate prompts, synthesize with the teacher, train the student.

Sequence-level distillation: the teacher writes text, the student learns it with the normal
fine-tuning loss, so teacher and student may use different tokenizers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunesmith import guide
from tunesmith.advisor import recommend
from tunesmith.datasets import DatasetKind, validate_dataset
from tunesmith.distillation.synthesis import SYNTHETIC, SynthesisReport, synthesize
from tunesmith.distillation.teachers import Teacher
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.models.registry import resolve_model
from tunesmith.training import StepInfo, TrainConfig, TrainingRun, write_results
from tunesmith.training.loop import DataError


class DistillationError(ValueError):
    pass


@dataclass
class DistillConfig:
    data: Path
    output: Path
    student: str = "micro"
    max_response_length: int = 512
    """The teacher's answer budget in tokens; longer answers are rejected as cut off."""
    hyperparameters: Hyperparameters | None = None
    """None: the advisor's values for the synthetic dataset and the student tier."""
    duplication: int | None = None
    method: str = "lora"
    precision: str = "auto"
    seed: int = 0
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        if not 1 <= self.max_response_length <= 8192:
            raise ValueError(f"max response length must be between 1 and 8192 tokens, got {self.max_response_length}")


def check_prompts(config: DistillConfig) -> None:
    report = validate_dataset(config.data, kind=DatasetKind.DISTILLATION)
    if not report.valid:
        raise DataError(report)


def run_distillation(
    config: DistillConfig, teacher: Teacher, on_step: Callable[[StepInfo], None] | None = None,
    on_answer: Callable[[int], None] | None = None, stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    check_prompts(config)
    source = resolve_model(config.student)
    synthesis_folder = config.output / "synthesis"
    synthesis: SynthesisReport = synthesize(config.data, teacher, synthesis_folder, config.max_response_length, on_done=on_answer, stop=stop)
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
        method=config.method, precision=config.precision, seed=config.seed, resume=config.resume,
    )
    run = TrainingRun(train_config, on_step)
    run.setup()
    state = run.train()
    if state.stopped:
        return {"stopped": True, "synthesis": synthesis.as_dict()}
    manifest = write_results(run)
    report = {
        "teacher": teacher.name, "student": config.student, "synthesis": synthesis.as_dict(),
        "training": manifest["result"], "hyperParameters": hyperparameters.to_wire(), "duplicationFactor": duplication,
        "studentModel": str(config.output / "student" / "model"),
    }
    (config.output / "distillation_report.json").write_text(json.dumps(report, indent=2))
    return report
