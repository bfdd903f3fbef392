"""``tunesmith distill``: a teacher answers the prompts, the student learns the answers."""

from __future__ import annotations

from typing import Any

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import config_options, config_values, hyperparameter_flags, hyperparameter_options, json_option
from tunesmith.cli.progress import show_run_warnings, teacher_and_student_progress
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.distillation.distill import DistillationError, DistillConfig, check_prompts, run_distillation
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training.examples import read_records


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@config_options(DistillConfig, ["student"])
@click.option("--teacher", required=True, help="Tier, custom model, model path, or the model id at --teacher-endpoint.")
@click.option("--teacher-endpoint", help="A remote teacher: a Bedrock-runtime endpoint URL, or an OpenAI-compatible chat-completions URL.")
@click.option("--teacher-api", type=click.Choice(["bedrock", "openai"]), default="bedrock", show_default=True)
@click.option("--teacher-concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Parallel remote calls.")
@config_options(DistillConfig, ["max_response_length", "output"])
@hyperparameter_options
@config_options(DistillConfig, ["method", "device", "precision", "resume"])
@json_option
def distill(data: str, teacher: str, teacher_endpoint: str | None, teacher_api: str, teacher_concurrency: int,
            as_json: bool, **options: Any) -> None:
    """Distill TEACHER into STUDENT on the prompts in DATA (answers are synthesized, then learned).

    Without hyperparameter flags the advisor's values for the synthetic dataset are used.
    """
    from tunesmith.distillation.teachers import RemoteError, resolve_teacher

    sent = hyperparameter_flags(options)
    with user_errors():
        hyperparameters = Hyperparameters.from_wire(sent) if sent else None
        config = DistillConfig(data=data, hyperparameters=hyperparameters, **config_values(options, DistillConfig))
        check_prompts(config)  # before loading any teacher
        if (config.output / "student" / "manifest.json").exists() and not config.resume:
            fail(f"{config.output} already holds a distilled student: choose another --output")
        prompts = sum(1 for _ in read_records(data))
        teacher_model = resolve_teacher(teacher, teacher_endpoint, teacher_api, concurrency=teacher_concurrency, device=config.device)
        try:
            with teacher_and_student_progress(prompts) as (on_answer, on_step):
                report = run_distillation(config, teacher_model, on_step=on_step, on_answer=on_answer, on_start=show_run_warnings)
        except (DistillationError, RemoteError, InterruptedError) as exc:
            fail(str(exc))
    if report["stopped"]:
        console.print(
            f"stopped after student step {report['steps']} of {report['totalSteps']}; the teacher's answers and the "
            f"student's last checkpoint are kept. Continue with the same command plus --resume"
        )
        raise SystemExit(130)
    if as_json:
        print_json(report)
        return
    synthesis = report["synthesis"]
    rows = [
        ["prompts answered", f"{synthesis['accepted']} accepted of {synthesis['prompts']}; rejected {synthesis['rejected'] or 'none'}"],
        ["labelled examples kept", synthesis["labelled"]],
        ["teacher agreement with labels", synthesis["teacherAgreementWithLabels"] or "-"],
        ["teacher throughput", f"{synthesis['teacherTokensPerSecond']} tokens/s"],
        ["student training", f"{report['training']['steps']} steps, final loss {report['training']['finalTrainingLoss']}"],
        ["student model", report["studentModel"]],
    ]
    console.print(table("Distillation finished", ["", ""], rows))
