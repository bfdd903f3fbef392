"""Every status a job, its phases, a custom model, a deployment and a model import can have, spelled once.

The values are the hosted API's (botocore's ``bedrock`` service model), so they are the wire
format and what the database holds: never rename one. Where two vocabularies share a word
(a job and its phases are both ``InProgress``), the later enum reuses the earlier one's value.
Each enum is a :class:`~enum.StrEnum`: a member equals, formats and serializes as its value.

Standard library only: the store's SQL, the API's types, the console, the CLI and ``tune``
(which reads statuses over HTTP) all read it. The transitions are in :mod:`tunesmith.jobs.lifecycle`.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """A customization job's ``status``."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


ACTIVE_JOB_STATUSES: tuple[JobStatus, ...] = (JobStatus.IN_PROGRESS, JobStatus.STOPPING)
"""Statuses of a job that still has work or a worker; the others are final."""


class PhaseStatus(enum.StrEnum):
    """A phase's ``status`` in ``statusDetails`` (validation, data processing, training). Bedrock
    also lists ``Stopping`` for phases; a phase here goes from InProgress straight to Stopped."""

    NOT_STARTED = "NotStarted"
    IN_PROGRESS = JobStatus.IN_PROGRESS.value
    COMPLETED = JobStatus.COMPLETED.value
    STOPPED = JobStatus.STOPPED.value
    FAILED = JobStatus.FAILED.value


class ModelStatus(enum.StrEnum):
    """A custom model's ``modelStatus``. A model is registered Active when its job completes."""

    ACTIVE = "Active"
    CREATING = "Creating"
    FAILED = JobStatus.FAILED.value


class DeploymentStatus(enum.StrEnum):
    """A custom model deployment's ``status``. A deployment here is Active at once."""

    CREATING = ModelStatus.CREATING.value
    ACTIVE = ModelStatus.ACTIVE.value
    FAILED = ModelStatus.FAILED.value


class ImportJobStatus(enum.StrEnum):
    """A model import job's ``status`` (CreateModelImportJob). An import here completes, or is
    refused, before CreateModelImportJob answers; InProgress is the hosted API's word for the wait."""

    IN_PROGRESS = JobStatus.IN_PROGRESS.value
    COMPLETED = JobStatus.COMPLETED.value
    FAILED = JobStatus.FAILED.value
