"""``tunesmith duplicate``: write a dataset repeated K times."""

from __future__ import annotations

import click

from tunesmith.cli.options import kind_option
from tunesmith.cli.render import console, fail
from tunesmith.datasets.duplicate import DuplicationError, duplicate_dataset


@click.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--factor", required=True, type=int, help="How many copies of every record to write.")
@click.option("--out", "output", required=True, type=click.Path(path_type=str), help="Where to write the duplicated dataset.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@kind_option
def duplicate(file: str, factor: int, output: str, force: bool, kind: str) -> None:
    """Write FILE's records FACTOR times to OUT (the input is never touched)."""
    try:
        result = duplicate_dataset(file, output, factor, force=force, kind=kind)
    except DuplicationError as exc:
        fail(str(exc))
    console.print(f"wrote {result.records_out:,} records ({result.records_in:,} x {result.factor}) to {result.output}")
