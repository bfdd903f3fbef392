"""Where a job's files live under the service home; every module asks here.

    HOME/jobs/JOB_ID/data/          training and validation data fetched from S3
    HOME/jobs/JOB_ID/synthesis/     distillation: the teacher's answers
    HOME/jobs/JOB_ID/run/           the training run: checkpoints, metrics, events, model
    HOME/jobs/JOB_ID.log            the worker's stdout and stderr
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.training.metrics import EVENTS


@dataclass(frozen=True)
class JobFolder:
    home: Path
    job_id: str

    @property
    def root(self) -> Path:
        return self.home / "jobs" / self.job_id

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def synthesis(self) -> Path:
        return self.root / "synthesis"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def events(self) -> Path:
        return self.run / EVENTS

    @property
    def log(self) -> Path:
        return self.home / "jobs" / f"{self.job_id}.log"
