"""``tunesmith refine``: clean a dataset, then let a model rewrite its answers (or prompts)."""

from __future__ import annotations

from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import device_option, json_option
from tunesmith.cli.progress import count_progress
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.datasets import DataError, DatasetKind, validate_dataset
from tunesmith.distillation.refine import DEFAULT_INSTRUCTIONS, refine as run_refine
from tunesmith.distillation.teachers import RemoteError, resolve_teacher


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--with", "model_spec", help="The model that rewrites (tier, result folder, path, or the model id at --endpoint). Without it: clean-up only.")
@click.option("--endpoint", help="A remote model: Bedrock-runtime endpoint or OpenAI-compatible chat-completions URL.")
@click.option("--api", type=click.Choice(["bedrock", "openai"]), default="bedrock", show_default=True)
@click.option("--instructions", help=f"What to change (default: {DEFAULT_INSTRUCTIONS!r}).")
@click.option("--instructions-file", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--target", type=click.Choice(["answers", "prompts"]), default="answers", show_default=True)
@click.option("--out", "output", required=True, type=click.Path(path_type=str))
@click.option("--force", is_flag=True, help="Overwrite --out.")
@device_option
@json_option
def refine(data, model_spec, endpoint, api, instructions, instructions_file, target, output, force, device, as_json) -> None:
    """Refine DATA into --out: normalise, de-duplicate, flag conflicts, then rewrite with a model.

    Writes OUT, OUT's .refine-report.json (counts) and .refine-changes.jsonl (before/after).
    """
    if instructions and instructions_file:
        fail("give --instructions or --instructions-file, not both", 2)
    text = Path(instructions_file).read_text(encoding="utf-8").strip() if instructions_file else instructions or DEFAULT_INSTRUCTIONS
    with user_errors():
        report = validate_dataset(data, kind=DatasetKind.FINE_TUNING, check_limits=False)
        if not report.valid:
            raise DataError(report)
        if Path(output).exists() and not force:
            fail(f"{output} already exists: pass --force to overwrite it")
        teacher = resolve_teacher(model_spec, endpoint, api, device=device) if model_spec else None
        try:
            with count_progress("rewriting", report.records if teacher else 0) as advance:
                result = run_refine(Path(data), Path(output), teacher, text, target, force=force, on_done=advance)
        except (FileExistsError, RemoteError) as exc:
            fail(str(exc))
    if as_json:
        print_json(result.as_dict())
        return
    console.print(table(f"Refined {result.records_in} records into {result.records_out}", ["Change", "Records"],
                        [[k, v] for k, v in result.changes.items() if v]))
    if result.conflicts:
        console.print(f"conflicting labels (kept, look at them): lines {result.conflicts[:10]}")
    console.print(f"wrote {output}; before/after per record: {Path(output).with_name(Path(output).stem + '.refine-changes.jsonl')}")
