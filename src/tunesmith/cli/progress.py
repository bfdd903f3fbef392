"""Live progress for long work: a rich bar on a terminal, periodic lines in logs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tunesmith.cli.render import err_console

if TYPE_CHECKING:  # the training loop imports torch, which `tunesmith --help` must not pay for
    from tunesmith.training import StepInfo, TrainingRun


def show_run_warnings(run: TrainingRun) -> None:
    """``finetune``'s ``on_start``: the plan's warnings, above the progress bar, before the first step."""
    for warning in run.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")


def first_step_estimate(info: StepInfo) -> str:
    """The line printed after the first step: the whole run's time at the speed just measured."""
    total = info.elapsed_s + info.eta_s
    return (f"estimate: {duration(total)} of training on this machine ({info.total_steps} steps at "
            f"{info.tokens_per_s:,.0f} tokens/s, measured on step {info.step})")


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


@contextlib.contextmanager
def training_progress(description: str = "training") -> Iterator[Callable[[StepInfo], None]]:
    """Yields an ``on_step`` callback for :func:`tunesmith.training.finetune`."""
    first: list[int | None] = [None]  # the first step this process ran (a resumed run starts later)
    if not err_console.is_terminal:
        def log_line(info: StepInfo) -> None:
            every = max(1, info.total_steps // 20)
            if first[0] is None:
                first[0] = info.step
                if info.step < info.total_steps:
                    err_console.print(first_step_estimate(info))
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
            if first[0] is None:
                first[0] = info.step
                if info.step < info.total_steps:
                    progress.console.print(first_step_estimate(info))
            progress.update(task, total=info.total_steps, completed=info.step, loss=f"{info.loss:.4f}", speed=f"{info.tokens_per_s:,.0f}")

        yield update


@contextlib.contextmanager
def teacher_and_student_progress(prompts: int) -> Iterator[tuple[Callable[[int], None], Callable[[StepInfo], None]]]:
    """One live display with a bar for the teacher's answers and one for the student's steps
    (rich allows a single live display at a time)."""
    if not err_console.is_terminal:
        with training_progress() as on_step:
            yield (lambda n: None), on_step
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        answers = progress.add_task("teacher answers", total=prompts, note="")
        steps = progress.add_task("student steps", total=None, note="")

        def on_step(info: StepInfo) -> None:
            progress.update(steps, total=info.total_steps, completed=info.step, note=f"loss {info.loss:.4f}")

        yield (lambda n: progress.advance(answers, n)), on_step


@contextlib.contextmanager
def count_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` items; yields ``advance(n)``."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not err_console.is_terminal, transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
