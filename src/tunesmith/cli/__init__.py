"""The ``tunesmith`` command line. Each command lives in a module of its own name."""

from __future__ import annotations

import click

from tunesmith import __version__
from tunesmith.cli.advise import advise
from tunesmith.cli.decide import decide
from tunesmith.cli.distill import distill
from tunesmith.cli.duplicate import duplicate
from tunesmith.cli.hyperparameters import hyperparameters
from tunesmith.cli.evaluate import chat, evaluate, generate
from tunesmith.cli.jobs import jobs
from tunesmith.cli.models import models
from tunesmith.cli.quickstart import quickstart
from tunesmith.cli.refine import refine
from tunesmith.cli.serve import serve
from tunesmith.cli.train import train
from tunesmith.cli.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tunesmith")
def cli() -> None:
    """Customize language models on your own hardware, with Amazon Nova's hyperparameters and guidance."""


for command in (hyperparameters, validate, advise, duplicate, models, train, evaluate, generate, chat, quickstart, serve, jobs, distill, refine, decide):
    cli.add_command(command)


def main() -> None:
    cli()
