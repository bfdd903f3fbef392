"""Jobs and custom models, persisted with SQLAlchemy.

The embedded default is SQLite in WAL mode under the service home (the API process and its
worker processes share it); any SQLAlchemy URL, PostgreSQL included, works instead.
Uniqueness (one job per name, one model per name, one job per client token) is enforced by
the database, so concurrent creates of the same name have exactly one winner.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, create_engine, event, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

if TYPE_CHECKING:
    from tunesmith.service.spec import JobSpec

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id() -> str:
    """12 lowercase alphanumerics, as in the hosted service's ARNs."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


ACTIVE_JOB = text("status IN ('InProgress', 'Stopping')")
"""The statuses of :data:`tunesmith.service.lifecycle.ACTIVE`, as SQL (the index below needs them here)."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # One active job per custom model name, enforced by the database: concurrent creates
        # with different job names and one model name have exactly one winner.
        Index("uq_jobs_active_model_name", "output_model_name", unique=True, sqlite_where=ACTIVE_JOB, postgresql_where=ACTIVE_JOB),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    client_token: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    spec_json: Mapped[dict] = mapped_column("request", JSON)
    """The validated create request (:class:`~tunesmith.service.spec.JobSpec`); read it with :attr:`spec`."""
    base_model_arn: Mapped[str] = mapped_column(String(1011))
    customization_type: Mapped[str] = mapped_column(String(32))
    output_model_name: Mapped[str] = mapped_column(String(63))
    output_model_arn: Mapped[str | None] = mapped_column(String(1011), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    """A :class:`~tunesmith.service.lifecycle.JobStatus` value."""
    phases: Mapped[dict] = mapped_column(JSON)
    """validationDetails / dataProcessingDetails / trainingDetails: {status, creationTime, lastModifiedTime}."""
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    training_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_losses: Mapped[list] = mapped_column(JSON, default=list)
    checkpoints: Mapped[list] = mapped_column(JSON, default=list)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True, default=dict)
    """What the run reported: the plan's warnings, the training plan."""

    @property
    def spec(self) -> JobSpec:
        from tunesmith.service.spec import JobSpec, spec_from_legacy

        if "job_name" in self.spec_json:
            return JobSpec.model_validate(self.spec_json)
        return spec_from_legacy(self.spec_json)


class CustomModel(Base):
    __tablename__ = "custom_models"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    job_arn: Mapped[str] = mapped_column(String(1011))
    job_name: Mapped[str] = mapped_column(String(63))
    base_model_arn: Mapped[str] = mapped_column(String(1011))
    customization_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="Creating")
    folder: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The result folder holding model/, adapter/ and manifest.json."""
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Deployment(Base):
    """A custom model made invocable (CreateCustomModelDeployment): here, simply a name for it."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model_arn: Mapped[str] = mapped_column(String(1011))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_token: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="Active")
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone
        return value.replace(tzinfo=dt.UTC)
    return value


@event.listens_for(Job, "load")
@event.listens_for(CustomModel, "load")
@event.listens_for(Deployment, "load")
def _restore_zones(target: Any, context: Any) -> None:
    for name in ("created", "modified", "ended"):
        if hasattr(target, name):
            setattr(target, name, _as_utc(getattr(target, name)))


class JobStore:
    """Sessions on one database; ``url`` defaults to SQLite under the service home."""

    def __init__(self, url: str):
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(connection, record):  # WAL: readers never block the writer
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
        Base.metadata.create_all(self.engine)
        self._add_missing_columns()
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _add_missing_columns(self) -> None:
        """Columns added since the first release, added in place to an older database.
        (Schema migrations proper, with Alembic, are planned; this covers the column and index so far.)"""
        columns = {c["name"] for c in inspect(self.engine).get_columns("jobs")}
        if "details" not in columns:
            with self.engine.begin() as connection:
                connection.execute(text("ALTER TABLE jobs ADD COLUMN details JSON"))
        for index in Job.__table__.indexes:
            index.create(self.engine, checkfirst=True)

    def session(self) -> Session:
        return self.sessions()

    def job(self, session: Session, identifier: str) -> Job | None:
        """By name or ARN."""
        column = Job.arn if identifier.startswith("arn:") else Job.name
        return session.scalar(select(Job).where(column == identifier))

    def model(self, session: Session, identifier: str) -> CustomModel | None:
        column = CustomModel.arn if identifier.startswith("arn:") else CustomModel.name
        return session.scalar(select(CustomModel).where(column == identifier))

    def deployment(self, session: Session, identifier: str) -> Deployment | None:
        column = Deployment.arn if identifier.startswith("arn:") else Deployment.name
        return session.scalar(select(Deployment).where(column == identifier))
