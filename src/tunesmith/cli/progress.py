"""Live progress for long work: a rich bar on a terminal, periodic lines in logs."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tunesmith.cli.render import err_console
from tunesmith.training import StepInfo


@contextlib.contextmanager
def training_progress(description: str = "training") -> Iterator[Callable[[StepInfo], None]]:
    """Yields an ``on_step`` callback for :class:`tunesmith.training.TrainingRun`."""
    if not err_console.is_terminal:
        def log_line(info: StepInfo) -> None:
            every = max(1, info.total_steps // 20)
            if info.step % every == 0 or info.step == info.total_steps or info.step == 1:
                err_console.print(
                    f"step {info.step}/{info.total_steps} epoch {info.epoch} loss {info.loss:.4f} lr {info.lr:.2e} "
                    f"{info.tokens_per_s:,.0f} tok/s elapsed {info.elapsed_s:,.0f}s eta {info.eta_s:,.0f}s"
                )
        yield log_line
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task(description, total=None, loss="-", speed="-")

        def update(info: StepInfo) -> None:
            progress.update(task, total=info.total_steps, completed=info.step, loss=f"{info.loss:.4f}", speed=f"{info.tokens_per_s:,.0f}")

        yield update


@contextlib.contextmanager
def count_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` items; yields ``advance(n)``."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not err_console.is_terminal, transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
