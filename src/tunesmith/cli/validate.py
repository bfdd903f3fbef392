"""``tunesmith validate``: check a dataset before spending any compute on it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from tunesmith.cli.options import json_option, kind_option, validation_option
from tunesmith.cli.render import console, err_console, print_json, print_problems, table
from tunesmith.datasets import ValidationReport, validate_dataset
from tunesmith.datasets.problems import DEFAULT_MAX_LISTED

PROGRESS_FROM_BYTES = 8 * 1024 * 1024
"""Show a progress bar for datasets at least this large."""


@contextmanager
def _progress(paths: Sequence[str]) -> Iterator:
    sizes = [Path(p).stat().st_size for p in paths if Path(p).is_file()]
    total = sum(sizes)
    if total < PROGRESS_FROM_BYTES or not err_console.is_terminal:
        yield None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("validating", total=total)
        yield lambda n: progress.advance(task, n)


def run_validation(file: str, validation: Sequence[str], kind: str, max_problems: int) -> ValidationReport:
    """Validate with a progress bar on large inputs (shared by ``validate`` and ``advise``)."""
    with _progress([file, *validation]) as on_progress:
        return validate_dataset(file, validation, kind, max_listed=max_problems, on_progress=on_progress)


def _fmt(dist: dict | None) -> str:
    if not dist:
        return "-"
    return " / ".join(f"{dist[k]:,.0f}" for k in ("min", "median", "p95", "max"))


def print_report(report: ValidationReport) -> None:
    print_problems(report.log)
    rows = []
    for stats in [report.training, *report.validation]:
        summary = stats.summary()
        role = "training" if stats is report.training else "validation"
        extra = f"{stats.labelled} labelled, {stats.prompt_only} prompts" if "messagesPerRecord" in summary else ""
        rows.append([role, stats.file, f"{stats.records:,}", _fmt(summary.get("messagesPerRecord")), _fmt(summary["charactersPerRecord"]), extra])
    click.echo()
    console.print(table(None, ["", "File", "Records", "Messages/record", "Characters/record", ""], rows))
    click.echo("(per record: min / median / p95 / max)")
    if report.comparison:
        c = report.comparison
        click.echo(
            f"validation vs training: median length ratio {c['medianLengthRatio']}, "
            f"{c['vocabularyCoverage']:.0%} of validation words occur in training"
        )
    errors, warnings = report.log.error_count, report.log.warning_count
    if report.valid:
        console.print(f"[green]valid[/]: {report.records:,} records ({report.kind.value}), {warnings} warning(s)")
    else:
        console.print(f"[red]invalid[/]: {errors} error(s), {warnings} warning(s)")


@click.command()
@click.argument("file", type=click.Path(path_type=str))
@validation_option
@kind_option
@json_option
@click.option("--max-problems", default=DEFAULT_MAX_LISTED, show_default=True, type=click.IntRange(1), help="Errors and warnings to list (the rest are counted).")
@click.option("--tokens", "model_spec", metavar="MODEL", help="Also count tokens per record with MODEL's tokenizer and chat template.")
def validate(file: str, validation: tuple[str, ...], kind: str, as_json: bool, max_problems: int, model_spec: str | None) -> None:
    """Validate FILE (JSON Lines) and report every problem as FILE:LINE: field: message.

    Exits 0 when the data is valid (warnings allowed), 1 when it is not.
    """
    report = run_validation(file, validation, kind, max_problems)
    tokens = _token_stats([file, *validation], report.kind, model_spec) if model_spec and report.valid else None
    if as_json:
        data = report.as_dict()
        if tokens:
            data["stats"]["tokens"] = tokens
        print_json(data)
    else:
        print_report(report)
        if tokens:
            click.echo(f"tokens ({model_spec}): {tokens['total']:,} in all; per record {_fmt(tokens['perRecord'])}")
            click.echo(f"shared prefix: {tokens['sharedPrefixShare']:.1%} of tokens (computed once per micro-batch when training)")
    raise SystemExit(0 if report.valid else 1)


def _token_stats(paths: list[str], kind, model_spec: str) -> dict:
    """Tokens per record of every file, and the share of the training file's tokens (the
    first path) that sits in a prefix another record shares, as the engine will see them."""
    from array import array

    from tunesmith.cli.errors import user_errors
    from tunesmith.datasets.stats import distribution
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.training.config import TrainConfig
    from tunesmith.training.examples import read_records, record_token_count, tokenize_records
    from tunesmith.training.prefixes import shared_prefix_share

    max_length = TrainConfig.__dataclass_fields__["max_length"].default  # what training cuts records to
    with user_errors():
        tokenizer = load_tokenizer(resolve_model(model_spec))
        counts = array("I", (record_token_count(tokenizer, r, kind) for path in paths for r in read_records(path)))
        trained = tokenize_records(read_records(paths[0]), tokenizer, kind, max_length).examples
    shared = shared_prefix_share([e.input_ids for e in trained])
    return {"model": model_spec, "total": sum(counts), "perRecord": distribution(counts), "sharedPrefixShare": round(shared, 4)}
