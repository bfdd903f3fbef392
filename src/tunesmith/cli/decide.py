"""``tunesmith decide``: measure, then say whether to distill or fine-tune, and why."""

from __future__ import annotations

from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import device_option, json_option
from tunesmith.cli.progress import training_progress
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.datasets import DataError, DatasetKind, validate_dataset


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=str), help="Labelled conversations (JSONL).")
@click.option("--student", default="micro", show_default=True)
@click.option("--teacher", required=True, help="Tier, custom model, model path, or the model id at --teacher-endpoint.")
@click.option("--teacher-endpoint", help="Bedrock-runtime endpoint or OpenAI-compatible chat-completions URL.")
@click.option("--teacher-api", type=click.Choice(["bedrock", "openai"]), default="bedrock", show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--workdir", type=click.Path(path_type=str), help="Where the short fine-tune goes (default: DATA's folder/decide-<name>).")
@device_option
@json_option
def decide(data, student, teacher, teacher_endpoint, teacher_api, max_new_tokens, workdir, device, as_json) -> None:
    """Hold out 20% of DATA; score the teacher, the student, and the student after a 1-epoch
    fine-tune on the rest; apply the guide's "When to Distill or Fine Tune?" rules."""
    from tunesmith.distillation.decide import decide as run_decide  # loads torch: only when the command runs
    from tunesmith.distillation.teachers import RemoteError, resolve_teacher

    folder = Path(workdir) if workdir else Path(data).parent / f"decide-{Path(data).stem}"
    with user_errors():
        report = validate_dataset(data, kind=DatasetKind.FINE_TUNING)
        if not report.valid:
            raise DataError(report)
        if (folder / "student").exists():
            fail(f"{folder} holds an earlier decision's fine-tune: remove it or pass another --workdir")
        try:
            with training_progress("student fine-tune") as on_step:
                decision = run_decide(Path(data), resolve_teacher(teacher, teacher_endpoint, teacher_api, device=device), student,
                                      folder, max_new_tokens, on_step=on_step, device=device)
        except RemoteError as exc:
            fail(str(exc))
        except InterruptedError as exc:  # SIGINT/SIGTERM during the fine-tune: nothing to score
            fail(str(exc), 130)
    if as_json:
        print_json(decision.as_dict())
        return
    rows = [[m.name, f"{m.exact_match:.1%}", f"{m.rouge_l:.3f}", f"{m.tokens_per_second:,.1f}", f"{m.parameters / 1e6:.0f}M" if m.parameters else "-"]
            for m in (decision.teacher, decision.student_base, decision.student_fine_tuned)]
    console.print(table(f"Held-out {decision.holdout} records; fine-tune on {decision.train_records} took {decision.fine_tune_seconds:.0f} s",
                        ["Model", "Exact match", "ROUGE-L", "Tokens/s", "Size"], rows))
    console.print(f"\n[bold]Recommendation: {decision.recommendation}[/] ({decision.rule.says})")
    console.print(decision.explanation)
