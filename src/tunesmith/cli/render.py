"""How the CLI shows things: problem lines, tables, JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunesmith.datasets import ProblemLog

# Piped output is read in files and CI logs: give tables room instead of rich's 80 columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_problems(log: ProblemLog) -> None:
    """Errors, then warnings, one ``FILE:LINE: field: message`` per line, plain text so they can be grepped."""
    for problem in log.errors:
        click.echo(f"{problem}")
    if log.errors_omitted:
        click.echo(f"... and {log.errors_omitted:,} more errors (raise --max-problems to list them)")
    for problem in log.warnings:
        click.echo(f"warning: {problem}")
    if log.warnings_omitted:
        click.echo(f"... and {log.warnings_omitted:,} more warnings")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    result = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for i, column in enumerate(columns):  # only the last column (prose) wraps
        result.add_column(column, no_wrap=i < len(columns) - 1)
    for row in rows:
        result.add_row(*(Text(str(cell)) for cell in row))  # data is never markup
    return result


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)
