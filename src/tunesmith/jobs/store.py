"""Jobs, custom models, deployments and model imports, persisted with SQLAlchemy.

The embedded default is SQLite in WAL mode under the service home (the API process and its
worker processes share it); PostgreSQL (``pip install 'tunesmith[postgres]'``, a
``postgresql+psycopg://`` URL) lets several servers share one database. The schema is
migrated with Alembic (:mod:`tunesmith.jobs.migrations`) when the store opens.
Uniqueness (one job per name, one model per name, one job per client token) is enforced by
the database, so concurrent creates of the same name have exactly one winner.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import string
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, TypeDecorator, create_engine, event, select, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from tunesmith.errors import TunesmithError
from tunesmith.jobs.logs import safe_database_url
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import ACTIVE_JOB_STATUSES, DeploymentStatus, ImportJobStatus, JobStatus, ModelStatus

if TYPE_CHECKING:
    from tunesmith.jobs.spec import JobSpec

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id() -> str:
    """12 lowercase alphanumerics, as in the hosted service's ARNs."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class StoredEnum(TypeDecorator):
    """A column of an enum's values: a VARCHAR in the database (the schema does not change), the
    enum's member in Python. Only the enum's values are written: anything else is a ValueError."""

    impl = String
    cache_ok = True

    def __init__(self, vocabulary: type[enum.StrEnum], length: int):
        super().__init__(length)
        self.vocabulary = vocabulary

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else self.vocabulary(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> enum.StrEnum | None:
        return None if value is None else self.vocabulary(value)


ACTIVE_JOB = text("status IN ({})".format(", ".join(f"'{status}'" for status in ACTIVE_JOB_STATUSES)))
""":data:`~tunesmith.statuses.ACTIVE_JOB_STATUSES` as SQL, for the partial index on jobs."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # One active job per custom model name, enforced by the database: concurrent creates
        # with different job names and one model name have exactly one winner.
        Index("uq_jobs_active_model_name", "output_model_name", unique=True, sqlite_where=ACTIVE_JOB, postgresql_where=ACTIVE_JOB),
        # List pages (newest first, keyset on creation time and id) and the supervisor's queue (by status, oldest first)
        Index("ix_jobs_created_id", "created", "id"),
        Index("ix_jobs_status_created_id", "status", "created", "id"),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    client_token: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    spec_json: Mapped[dict] = mapped_column("request", JSON)
    """The validated create request (:class:`~tunesmith.jobs.spec.JobSpec`); read it with :attr:`spec`."""
    base_model_arn: Mapped[str] = mapped_column(String(1011))
    customization_type: Mapped[CustomizationKind] = mapped_column(StoredEnum(CustomizationKind, 32))
    output_model_name: Mapped[str] = mapped_column(String(63))
    output_model_arn: Mapped[str | None] = mapped_column(String(1011), nullable=True)
    status: Mapped[JobStatus] = mapped_column(StoredEnum(JobStatus, 16))
    """Changed only by :mod:`tunesmith.jobs.lifecycle`."""
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
    worker_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """The machine (``--node-name``) whose worker holds the job; only servers there check ``worker_pid``."""
    server_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The server that claimed the job; it and its worker renew the lease."""
    lease_expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Once past, any server may take the job over (resume it from its checkpoint)."""

    @property
    def spec(self) -> JobSpec:
        from tunesmith.jobs.spec import JobSpec, spec_from_legacy

        if "job_name" in self.spec_json:
            return JobSpec.model_validate(self.spec_json)
        return spec_from_legacy(self.spec_json)


class CustomModel(Base):
    __tablename__ = "custom_models"
    __table_args__ = (Index("ix_custom_models_created_id", "created", "id"),)  # List pages

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    job_arn: Mapped[str] = mapped_column(String(1011))
    job_name: Mapped[str] = mapped_column(String(63))
    base_model_arn: Mapped[str] = mapped_column(String(1011))
    customization_type: Mapped[CustomizationKind] = mapped_column(StoredEnum(CustomizationKind, 32))
    status: Mapped[ModelStatus] = mapped_column(StoredEnum(ModelStatus, 16), default=ModelStatus.CREATING)
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
    status: Mapped[DeploymentStatus] = mapped_column(StoredEnum(DeploymentStatus, 16), default=DeploymentStatus.ACTIVE)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelImport(Base):
    """A model import job (CreateModelImportJob): a result folder registered as a custom model
    (:mod:`tunesmith.jobs.imports`). The model is a :class:`CustomModel` whose ``job_arn`` is this one's."""

    __tablename__ = "model_imports"
    __table_args__ = (Index("ix_model_imports_created_id", "created", "id"),)  # List pages

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    arn: Mapped[str] = mapped_column(String(1011), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    client_token: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    model_name: Mapped[str] = mapped_column(String(63))
    model_arn: Mapped[str | None] = mapped_column(String(1011), nullable=True)
    role_arn: Mapped[str] = mapped_column(String(2048))
    source_uri: Mapped[str] = mapped_column(Text)
    """``modelDataSource.s3DataSource.s3Uri`` as sent: a local path, file:// or s3:// URI."""
    status: Mapped[ImportJobStatus] = mapped_column(StoredEnum(ImportJobStatus, 16))
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone
        return value.replace(tzinfo=dt.UTC)
    return value


@event.listens_for(Job, "load")
@event.listens_for(CustomModel, "load")
@event.listens_for(Deployment, "load")
@event.listens_for(ModelImport, "load")
@event.listens_for(Job, "refresh")
@event.listens_for(CustomModel, "refresh")
@event.listens_for(Deployment, "refresh")
@event.listens_for(ModelImport, "refresh")
def _restore_zones(target: Any, context: Any, attributes: Any = None) -> None:
    for name in ("created", "modified", "ended", "lease_expires"):
        if hasattr(target, name) and name in target.__dict__:  # loaded (a refresh may load only some)
            setattr(target, name, _as_utc(getattr(target, name)))


class StoreError(TunesmithError):
    """The database cannot be opened: a URL SQLAlchemy cannot read, a driver not installed, a server not reachable."""


class JobStore:
    """Sessions on one database, its schema migrated to the newest revision unless ``migrate`` is
    False (workers: their server migrated it before starting them)."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        # The API answers on up to 40 threads (FastAPI's threadpool) and the supervisor on one more:
        # enough connections that none waits for another's (SQLAlchemy's default is 5 + 10 overflow),
        # and only 10 kept open while idle (PostgreSQL's default limit is 100 for every server and worker).
        in_memory = url in ("sqlite://", "sqlite:///") or ":memory:" in url or "mode=memory" in url  # one connection, shared
        kwargs: dict[str, Any] = {} if in_memory else {"pool_size": 10, "max_overflow": 35}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        elif url.startswith("postgresql"):
            kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails in seconds, not minutes
        try:
            self.engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), **kwargs)
        except (NoSuchModuleError, ImportError) as exc:  # an unknown dialect, a driver not installed
            hint = " (pip install 'tunesmith[postgres]')" if isinstance(exc, ImportError) and url.startswith("postgresql") else ""
            raise StoreError(f"database URL {safe_database_url(url)}: {_reason(exc)}{hint}") from None
        except ArgumentError:  # not echoed: it may hold a password
            raise StoreError("the database URL is not one SQLAlchemy reads: expected dialect+driver://user:password@host/database, "
                             "e.g. postgresql+psycopg://tunesmith@db/tunesmith or sqlite:////srv/tunesmith.db") from None
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(connection, record):  # WAL: readers never block the writer
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
        if migrate:
            from tunesmith.jobs import migrations

            try:
                migrations.upgrade(self.engine)
            except OperationalError as exc:
                raise StoreError(f"cannot open the database {safe_database_url(url)}: {_reason(exc.orig or exc)}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

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

    def model_import(self, session: Session, identifier: str) -> ModelImport | None:
        column = ModelImport.arn if identifier.startswith("arn:") else ModelImport.name
        return session.scalar(select(ModelImport).where(column == identifier))


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message (psycopg's carry hints on further lines)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0]
