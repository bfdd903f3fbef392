"""``GET /metrics``: Prometheus metrics of the server and of the jobs it trains.

Workers are separate processes, so nothing here counts inside them: at each scrape the
job gauges are read from what the workers already record, the job rows in the store and
each running job's ``events.jsonl`` (its last ``step`` events). What this process does itself
is counted as it happens: requests, by :class:`~tunesmith.api.observability.RequestObserver`,
and the runtime's model loads and answers, by the model cache's listeners
(:mod:`tunesmith.inference.model_cache`).

    tunesmith_jobs{status}                     jobs by status (every status, zeros included)
    tunesmith_jobs_queued                      InProgress jobs no worker has started yet
    tunesmith_jobs_running                     jobs with a worker (InProgress or Stopping)
    tunesmith_job_step{job}                    the last optimizer step a running job completed
    tunesmith_job_total_steps{job}             the steps its plan has
    tunesmith_job_training_loss{job}           the loss of that step
    tunesmith_job_tokens_per_second{job}       tokens/s of that step
    tunesmith_job_steps_per_second{job}        1 / the seconds of that step (training time)
    tunesmith_http_request_duration_seconds{route,method,status}   a histogram; route is the full
                                               template (/custom-models/{identifier}, /console/jobs/{name},
                                               /console/static/{path}), never the raw path; <unmatched> else
    tunesmith_generated_tokens_total{kind}     output tokens of complete answers (kind: base or custom),
                                               whichever API asked, streamed or not
    tunesmith_model_loads_total{kind,outcome}  models loaded into the runtime's cache (outcome: ok or error)
    tunesmith_model_load_seconds{kind}         a histogram of the time successful loads took (S3 download included)

Each app has its own registry (``create_app`` keeps no module globals). With
``--credentials``, scrapers send ``Authorization: Bearer <secret>`` (``auth.BEARER_PATHS``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select

from tunesmith.api.observability import RequestRecord
from tunesmith.inference.model_cache import Answered, InferenceEvent, ModelKind, ModelLoad
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.store import Job, JobStore
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds; up to two minutes, as a streamed Converse answer on a CPU can take."""
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds; a test model loads in a tenth of one, a large model downloaded from S3 in minutes."""
LOAD_OUTCOMES = {True: "ok", False: "error"}
"""A model load's ``outcome`` label, by whether it succeeded."""
TAIL_BYTES = 32 * 1024
"""How much of the end of ``events.jsonl`` is read per job per scrape (hundreds of events)."""


@dataclass(frozen=True)
class StepProgress:
    """What a running job's last ``step`` events say."""

    step: int
    loss: float
    tokens_per_s: float
    steps_per_s: float | None
    """From the last two consecutive steps' training time; else the run's average; None before any time passed."""


def last_step_events(path: Path, count: int = 2) -> list[dict]:
    """The last ``count`` ``step`` events of an ``events.jsonl``, oldest first ([] when there
    are none yet). Reads the file's tail only; a line still being written is skipped."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return []
    found: list[dict] = []
    for line in reversed(tail.splitlines()[1:] if size > TAIL_BYTES else tail.splitlines()):  # the first may be cut
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "step":
            found.append(event)
            if len(found) == count:
                break
    return found[::-1]


def step_progress(events_path: Path) -> StepProgress | None:
    events = last_step_events(events_path)
    if not events:
        return None
    last = events[-1]
    try:
        step, elapsed = int(last["step"]), float(last["elapsed_s"])
        rate = step / elapsed if elapsed > 0 else None
        if len(events) == 2:
            before = events[0]
            steps, seconds = step - int(before["step"]), elapsed - float(before["elapsed_s"])
            if steps == 1 and seconds > 0:  # consecutive steps of one run (not across a resume)
                rate = 1 / seconds
        return StepProgress(step, float(last["loss"]), float(last["tokens_per_s"]), rate)
    except (KeyError, TypeError, ValueError):  # a record this version does not understand: no numbers rather than a failed scrape
        return None


class JobCollector:
    """Reads the job gauges from the store and the job folders at each scrape."""

    def __init__(self, store: JobStore, home: Path):
        self.store, self.home = store, home

    def collect(self) -> Iterator[Metric]:
        with self.store.session() as session:
            counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            queued = session.scalar(select(func.count()).select_from(Job).where(
                Job.status == JobStatus.IN_PROGRESS, Job.worker_pid.is_(None)))
            running = session.execute(select(Job.id, Job.name, Job.details).where(
                Job.status.in_(ACTIVE_JOB_STATUSES), Job.worker_pid.isnot(None)).order_by(Job.name)).all()
        by_status = GaugeMetricFamily("tunesmith_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            by_status.add_metric([status.value], counts.get(status, 0))
        yield by_status
        yield GaugeMetricFamily("tunesmith_jobs_queued", f"{JobStatus.IN_PROGRESS} jobs waiting for a worker.", value=queued or 0)
        yield GaugeMetricFamily("tunesmith_jobs_running", f"Jobs with a worker process ({' or '.join(ACTIVE_JOB_STATUSES)}).", value=len(running))
        yield from self._progress(running)

    def _progress(self, running) -> Iterator[Metric]:
        families = {
            "step": GaugeMetricFamily("tunesmith_job_step", "The last optimizer step a running job completed.", labels=["job"]),
            "total": GaugeMetricFamily("tunesmith_job_total_steps", "Optimizer steps in a running job's plan.", labels=["job"]),
            "loss": GaugeMetricFamily("tunesmith_job_training_loss", "Training loss of a running job's last step.", labels=["job"]),
            "tokens": GaugeMetricFamily("tunesmith_job_tokens_per_second", "Tokens per second of a running job's last step.", labels=["job"]),
            "steps": GaugeMetricFamily("tunesmith_job_steps_per_second", "Optimizer steps per second of a running job (training time).", labels=["job"]),
        }
        for job_id, name, details in running:
            total = ((details or {}).get("plan") or {}).get("totalSteps")
            if isinstance(total, int):
                families["total"].add_metric([name], total)
            progress = step_progress(JobFolder(self.home, job_id).events)
            if progress is None:
                continue
            families["step"].add_metric([name], progress.step)
            families["loss"].add_metric([name], progress.loss)
            families["tokens"].add_metric([name], progress.tokens_per_s)
            if progress.steps_per_s is not None:
                families["steps"].add_metric([name], progress.steps_per_s)
        yield from families.values()


class ServiceMetrics:
    """One app's registry: the request histogram (fed by the request observer), the inference
    counters (fed by the model cache) and the job collector."""

    def __init__(self, store: JobStore, home: Path):
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "tunesmith_http_request_duration_seconds", "Time from request to last response byte, by route template.",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.generated_tokens = Counter(
            "tunesmith_generated_tokens", "Output tokens of complete answers (every API, streamed or not), by model kind.",
            ["kind"], registry=self.registry,
        )
        self.model_loads = Counter(
            "tunesmith_model_loads", "Models loaded into the runtime's cache, by model kind and outcome.",
            ["kind", "outcome"], registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "tunesmith_model_load_seconds", "Time a successful model load took (S3 download included), by model kind.",
            ["kind"], buckets=LOAD_BUCKETS, registry=self.registry,
        )
        for kind in ModelKind:  # every series from the start, so rate() sees the first increment
            self.generated_tokens.labels(kind)
            self.model_load_seconds.labels(kind)
            for outcome in LOAD_OUTCOMES.values():
                self.model_loads.labels(kind, outcome)
        self.registry.register(JobCollector(store, home))

    def observe(self, record: RequestRecord) -> None:
        """A :class:`RequestObserver` listener."""
        self.latency.labels(record.route, record.method, str(record.status)).observe(record.seconds)

    def observe_inference(self, event: InferenceEvent) -> None:
        """A :class:`~tunesmith.inference.model_cache.ModelCache` listener."""
        match event:
            case Answered(kind=kind, output_tokens=tokens):
                self.generated_tokens.labels(kind).inc(tokens)
            case ModelLoad(kind=kind, seconds=seconds, ok=ok):
                self.model_loads.labels(kind, LOAD_OUTCOMES[ok]).inc()
                if ok:
                    self.model_load_seconds.labels(kind).observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text, or OpenMetrics), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def metrics_of(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


MetricsDep = Annotated[ServiceMetrics, Depends(metrics_of)]
router = APIRouter()
EXPOSITION = {"description": "Prometheus text exposition format (OpenMetrics when the Accept header asks for it).",
              "content": {"text/plain": {"schema": {"type": "string"}}, "application/openmetrics-text": {"schema": {"type": "string"}}}}


@router.get("/metrics", response_class=Response, responses={200: EXPOSITION}, tags=["observability"])
def metrics(service_metrics: MetricsDep, accept: Annotated[str | None, Header(max_length=1024)] = None) -> Response:
    """Prometheus metrics: jobs by status, queue depth, running jobs' progress and speed, request latency,
    generated tokens and model loads."""
    body, content_type = service_metrics.exposition(accept)
    return Response(body, media_type=content_type)
