"""``tunesmith distill``: a teacher answers the prompts, the student learns the answers."""

from __future__ import annotations

from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import hyperparameter_flags, hyperparameter_options, json_option
from tunesmith.cli.progress import teacher_and_student_progress
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.distillation.distill import DistillConfig, DistillationError, check_prompts, run_distillation
from tunesmith.distillation.teachers import RemoteError, resolve_teacher
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training.examples import read_records


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--student", default="micro", show_default=True, help="The model to train (tier, hosted id or path).")
@click.option("--teacher", required=True, help="Tier, custom model, model path, or the model id at --teacher-endpoint.")
@click.option("--teacher-endpoint", help="A remote teacher: a Bedrock-runtime endpoint URL, or an OpenAI-compatible chat-completions URL.")
@click.option("--teacher-api", type=click.Choice(["bedrock", "openai"]), default="bedrock", show_default=True)
@click.option("--teacher-concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Parallel remote calls.")
@click.option("--max-response-length", default=512, show_default=True, type=click.IntRange(1, 8192), help="Teacher answer budget (tokens).")
@click.option("--output", required=True, type=click.Path(path_type=str))
@hyperparameter_options
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted distillation in --output (answered prompts are kept).")
@json_option
def distill(data, student, teacher, teacher_endpoint, teacher_api, teacher_concurrency, max_response_length, output,
            method, precision, resume, as_json, **flags) -> None:
    """Distill TEACHER into STUDENT on the prompts in DATA (answers are synthesized, then learned).

    Without hyperparameter flags the advisor's values for the synthetic dataset are used.
    """
    sent = hyperparameter_flags(flags)
    with user_errors():
        hyperparameters = Hyperparameters.from_wire(sent) if sent else None
        config = DistillConfig(data=Path(data), output=Path(output), student=student, max_response_length=max_response_length,
                               hyperparameters=hyperparameters, method=method, precision=precision, resume=resume)
        check_prompts(config)  # before loading any teacher
        if (Path(output) / "student" / "manifest.json").exists() and not resume:
            fail(f"{output} already holds a distilled student: choose another --output")
        prompts = sum(1 for _ in read_records(data))
        teacher_model = resolve_teacher(teacher, teacher_endpoint, teacher_api, concurrency=teacher_concurrency)
        try:
            with teacher_and_student_progress(prompts) as (on_answer, on_step):
                report = run_distillation(config, teacher_model, on_step=on_step, on_answer=on_answer)
        except (DistillationError, RemoteError, InterruptedError) as exc:
            fail(str(exc))
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
