"""A job as the console shows it, read from its row and its ``events.jsonl``: the current
phase, the step reached, the ETA, the loss curves and the latest events.

The events file is the training loop's own record (``training.metrics``), tailed while the
worker writes it: a line still being written (no newline yet) is left for the next read,
and a step logged twice (a resumed run repeats the steps after its checkpoint) keeps its
latest loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.jobs.lifecycle import Phase
from tunesmith.jobs.store import Job
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus, PhaseStatus

TAIL_BYTES = 64 * 1024
"""How much of the end of the events file the jobs list reads for the latest step."""
MAX_EVENTS = 200_000
PHASE_LABELS = {Phase.VALIDATION.value: "Validation", Phase.DATA_PROCESSING.value: "Data processing", Phase.TRAINING.value: "Training"}


def read_events(path: Path, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (only those in its last ``tail_bytes`` if given)."""
    if not path.is_file():
        return []
    with path.open("rb") as handle:
        if tail_bytes is not None:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - tail_bytes))
        data = handle.read()
    if tail_bytes is not None and not data.startswith(b"{"):
        data = data.partition(b"\n")[2]  # the first line was cut in half by the seek
    events = []
    for line in data.split(b"\n")[:-1][-MAX_EVENTS:]:  # the piece after the last newline is still being written
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def current_phase(job: Job) -> str:
    """``Training`` while it runs; after the end, the last phase reached and how it ended."""
    phases = job.phases or {}
    for key, label in PHASE_LABELS.items():
        if phases.get(key, {}).get("status") == PhaseStatus.IN_PROGRESS:
            return label
    reached = [(label, phases[key]["status"]) for key, label in PHASE_LABELS.items()
               if phases.get(key, {}).get("status", PhaseStatus.NOT_STARTED) != PhaseStatus.NOT_STARTED]
    if not reached:
        return "Queued" if job.status in ACTIVE_JOB_STATUSES else "Not started"
    label, status = reached[-1]
    return f"{label} {status.lower()}"


@dataclass(frozen=True)
class Progress:
    phase: str
    step: int | None
    total: int | None
    eta_s: float | None
    """Seconds left, as the training loop estimates them; None when unknown or ended."""

    @property
    def percent(self) -> int | None:
        if not self.total or self.step is None:
            return None
        return min(100, round(100 * self.step / self.total))


def job_progress(job: Job, events_path: Path, events: list[dict] | None = None) -> Progress:
    total = ((job.details or {}).get("plan") or {}).get("totalSteps")
    if events is None:
        events = read_events(events_path, TAIL_BYTES)
    last = next((e for e in reversed(events) if e.get("event") == "step"), None)
    step = last.get("step") if last else None
    active = job.status in ACTIVE_JOB_STATUSES
    if job.status == JobStatus.COMPLETED and total:
        step = total
    eta = last.get("eta_s") if last and active else None
    return Progress(current_phase(job), step if isinstance(step, int) else None, total if isinstance(total, int) else None,
                    eta if isinstance(eta, (int, float)) else None)


def loss_series(events: list[dict]) -> dict[str, list]:
    """uPlot's data: steps, training loss and validation loss on those steps (None where a
    step has no validation)."""
    training: dict[int, float] = {}
    validation: dict[int, float] = {}
    for event in events:
        kind, step, loss = event.get("event"), event.get("step"), event.get("loss")
        if not isinstance(step, int) or not isinstance(loss, (int, float)):
            continue
        if kind == "step":
            training[step] = loss
        elif kind == "validation":
            validation[step] = loss
    steps = sorted(training.keys() | validation.keys())
    return {"steps": steps, "training": [training.get(s) for s in steps], "validation": [validation.get(s) for s in steps]}


def shown_fields(event: dict) -> str:
    """An event's fields other than its kind and time, as ``key=value`` pairs."""
    parts = []
    for key, value in event.items():
        if key in ("event", "time"):
            continue
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key}={text[:200]}")
    return "  ".join(parts)
