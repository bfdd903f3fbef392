"""The ``tunesmith`` command line. Each command lives in a module of its own name.

Commands are imported only when they run or show their own help (click's lazy-loading
pattern): most of them load torch, which costs seconds that ``tunesmith --help`` should not.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click

from tunesmith import __version__


@dataclass(frozen=True)
class LazyCommand:
    target: str
    """Where the click command lives, ``"module:function"``."""
    summary: str
    """The first sentence of its docstring, listed by ``tunesmith --help`` without importing it
    (``tests/test_cli.py`` checks that the two agree)."""


COMMANDS = {
    "advise": LazyCommand("tunesmith.cli.advise:advise", "Recommend epochs, duplication, warmup and learning rate for FILE (or --records N)."),
    "chat": LazyCommand("tunesmith.cli.evaluate:chat", "Talk to a model in the terminal (empty line or Ctrl-D to quit)."),
    "decide": LazyCommand(
        "tunesmith.cli.decide:decide",
        "Hold out 20% of DATA; score the teacher, the student, and the student after a 1-epoch fine-tune on the rest; "
        "apply the guide's \"When to Distill or Fine Tune?\" rules.",
    ),
    "distill": LazyCommand(
        "tunesmith.cli.distill:distill",
        "Distill TEACHER into STUDENT on the prompts in DATA (answers are synthesized, then learned).",
    ),
    "duplicate": LazyCommand("tunesmith.cli.duplicate:duplicate", "Write FILE's records FACTOR times to OUT (the input is never touched)."),
    "estimate": LazyCommand(
        "tunesmith.cli.estimate:estimate",
        "Estimate a training run of DATA before it starts: optimizer steps, tokens, time on this machine, peak memory.",
    ),
    "evaluate": LazyCommand("tunesmith.cli.evaluate:evaluate", "Answer loss, perplexity, greedy exact match and ROUGE-L of a model on DATA."),
    "export": LazyCommand(
        "tunesmith.cli.export:export",
        "Export the trained model in RUN for llama.cpp and Ollama: GGUF, Modelfile, merged safetensors and a model card.",
    ),
    "generate": LazyCommand(
        "tunesmith.cli.evaluate:generate",
        "Answer every prompt in DATA (batched, KV cache) and write records with the answers to --out.",
    ),
    "hyperparameters": LazyCommand(
        "tunesmith.cli.hyperparameters:hyperparameters",
        "Show the hyperparameters you can set, with their types, bounds and defaults.",
    ),
    "jobs": LazyCommand("tunesmith.cli.jobs:jobs", "Create and follow customization jobs on a tunesmith server."),
    "models": LazyCommand("tunesmith.cli.models:models", "List and prepare models; import a result folder into a tunesmith server."),
    "quickstart": LazyCommand(
        "tunesmith.cli.quickstart:quickstart",
        "Build a small task, fine-tune micro with the advised hyperparameters, compare with the base model.",
    ),
    "refine": LazyCommand(
        "tunesmith.cli.refine:refine",
        "Refine DATA into --out: normalise, de-duplicate, flag conflicts, then rewrite with a model.",
    ),
    "serve": LazyCommand("tunesmith.cli.serve:serve", "Serve Bedrock's model-customization and runtime APIs; jobs train in worker processes."),
    "train": LazyCommand(
        "tunesmith.cli.train:train",
        "Train on DATA (JSONL) and write checkpoints, metrics and the trained model to --output.",
    ),
    "tune": LazyCommand(
        "tunesmith.cli.tune:tune",
        "Search epochs, learning rate, warmup and duplication for DATA within --budget; print the best hyperParameters.",
    ),
    "validate": LazyCommand(
        "tunesmith.cli.validate:validate",
        "Validate FILE (JSON Lines) and report every problem as FILE:LINE: field: message.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def __init__(self, *args, lazy_commands: dict[str, LazyCommand], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy_commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return None
        module, _, attribute = self.lazy_commands[cmd_name].target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, shortened the same way, but from the summaries: nothing is imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, click.Command(name, help=self.lazy_commands[name].summary).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tunesmith")
def cli() -> None:
    """Customize language models on your own hardware, with Amazon Nova's hyperparameters and guidance."""


def main() -> None:
    cli()
