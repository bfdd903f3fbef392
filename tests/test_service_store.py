"""The store: its schema migrated with Alembic on SQLite and PostgreSQL alike (a database an
earlier tunesmith wrote upgrades in place, every row kept), claims that have one winner, and
leases another server takes over once they lapse."""

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import StatementError

from tunesmith.api import wire
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.jobs import arns, lifecycle
from tunesmith.jobs.spec import JobSpec, spec_from_legacy
from tunesmith.jobs.store import Base, CustomModel, Deployment, Job, JobStore, StoreError, new_id, utcnow
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import JobStatus

LEGACY_REQUEST = {
    "jobName": "old-job", "customModelName": "old-model", "roleArn": "arn:aws:iam::123456789012:role/r",
    "baseModelIdentifier": "amazon.nova-micro-v1:0:128k", "customizationType": "FINE_TUNING",
    "trainingDataConfig": {"s3Uri": "/data/t.jsonl"}, "outputDataConfig": {"s3Uri": "/data/out"},
    "validationDataConfig": {"validators": [{"s3Uri": "/data/v.jsonl"}]}, "hyperParameters": {"epochCount": "3"},
    "hyperParametersResolved": {"epochCount": "3", "learningRate": "1e-05", "learningRateWarmupSteps": "10"},
}

# The schema the last release without migrations created (SQLAlchemy's create_all on SQLite), frozen.
OLD_SCHEMA = """
CREATE TABLE jobs (
    id VARCHAR(12) NOT NULL, arn VARCHAR(1011) NOT NULL, name VARCHAR(63) NOT NULL, client_token VARCHAR(256),
    request JSON NOT NULL, base_model_arn VARCHAR(1011) NOT NULL, customization_type VARCHAR(32) NOT NULL,
    output_model_name VARCHAR(63) NOT NULL, output_model_arn VARCHAR(1011), status VARCHAR(16) NOT NULL, phases JSON NOT NULL,
    failure_message TEXT, training_loss FLOAT, validation_losses JSON NOT NULL, checkpoints JSON NOT NULL,
    stop_requested BOOLEAN NOT NULL, worker_pid INTEGER, attempts INTEGER NOT NULL, created DATETIME NOT NULL,
    modified DATETIME NOT NULL, ended DATETIME, details JSON,
    PRIMARY KEY (id), UNIQUE (arn), UNIQUE (name), UNIQUE (client_token)
);
CREATE UNIQUE INDEX uq_jobs_active_model_name ON jobs (output_model_name) WHERE status IN ('InProgress', 'Stopping');
CREATE TABLE custom_models (
    id VARCHAR(12) NOT NULL, arn VARCHAR(1011) NOT NULL, name VARCHAR(63) NOT NULL, job_arn VARCHAR(1011) NOT NULL,
    job_name VARCHAR(63) NOT NULL, base_model_arn VARCHAR(1011) NOT NULL, customization_type VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL, folder TEXT, details JSON NOT NULL, created DATETIME NOT NULL,
    PRIMARY KEY (id), UNIQUE (arn), UNIQUE (name)
);
CREATE TABLE deployments (
    id VARCHAR(12) NOT NULL, arn VARCHAR(1011) NOT NULL, name VARCHAR(63) NOT NULL, model_arn VARCHAR(1011) NOT NULL,
    description TEXT, client_token VARCHAR(256), status VARCHAR(16) NOT NULL, created DATETIME NOT NULL,
    modified DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (arn), UNIQUE (name), UNIQUE (client_token)
);
"""
EARLIEST_SCHEMA = OLD_SCHEMA.replace(", details JSON,", ",").split("CREATE UNIQUE INDEX")[0] + OLD_SCHEMA.split(";", 2)[2]
"""The first release's: no jobs.details column, no one-active-job-per-model index."""


def _old_database(path, schema: str) -> None:
    """Three jobs, a model and a deployment, written as the old release wrote them."""
    now = "2026-01-02 03:04:05.000000"
    with_details = "ended DATETIME, details JSON" in schema
    with sqlite3.connect(path) as connection:
        connection.executescript(schema)
        for i, status in enumerate(("Completed", "InProgress", "Failed")):
            name = "old-job" if i == 0 else f"old-job-{i}"
            request = {**LEGACY_REQUEST, "jobName": name, "customModelName": f"{name}-model"}
            columns = ("id, arn, name, request, base_model_arn, customization_type, output_model_name, status, phases, "
                       "validation_losses, checkpoints, stop_requested, worker_pid, attempts, created, modified")
            values = [f"job{i:09d}", arns.job_arn("amazon.nova-micro-v1:0:128k", f"job{i:09d}"), name, wire_json(request),
                      arns.foundation_model_arn("amazon.nova-micro-v1:0:128k"), "FINE_TUNING", f"{name}-model", status,
                      wire_json(lifecycle.new_phases()), "[]", "[]", 0, 4242 if status == "InProgress" else None, 1, now, now]
            if with_details:
                columns, values = columns + ", details", [*values, '{"warnings": ["kept"]}']
            connection.execute(f"INSERT INTO jobs ({columns}) VALUES ({', '.join('?' * len(values))})", values)
        connection.execute("INSERT INTO custom_models VALUES (?, ?, 'old-job-model', ?, 'old-job', ?, 'FINE_TUNING', 'Active', "
                           "'/srv/model', '{}', ?)", ("model0000000", "arn:aws:bedrock:us-east-1:123456789012:custom-model/m",
                                                      arns.job_arn("amazon.nova-micro-v1:0:128k", "job000000000"), "base", now))
        connection.execute("INSERT INTO deployments VALUES ('dep000000000', 'arn:dep', 'old-deployment', ?, NULL, NULL, 'Active', ?, ?)",
                           ("arn:aws:bedrock:us-east-1:123456789012:custom-model/m", now, now))


def wire_json(value) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("schema", [OLD_SCHEMA, EARLIEST_SCHEMA], ids=["last-release", "first-release"])
def test_a_database_from_before_migrations_upgrades_in_place_keeping_every_row(tmp_path, schema):
    _old_database(tmp_path / "old.db", schema)
    store = JobStore(f"sqlite:///{tmp_path / 'old.db'}")
    with store.session() as session:
        assert session.query(Job).count() == 3 and session.query(CustomModel).count() == 1 and session.query(Deployment).count() == 1
        job = store.job(session, "old-job")
        detail = wire.job_detail(job)
        assert job.details == ({"warnings": ["kept"]} if "ended DATETIME, details JSON" in schema else None)
        assert job.created == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        running = store.job(session, "old-job-1")
        assert running.worker_pid == 4242 and running.worker_node is None and running.lease_expires is None  # a local job, as before
    assert detail["hyperParameters"] == LEGACY_REQUEST["hyperParametersResolved"]
    assert detail["validationDataConfig"] == {"validators": [{"s3Uri": "/data/v.jsonl"}]}
    assert store.job(store.session(), "old-job").spec.tier == "micro"
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("jobs")}
    assert {"uq_jobs_active_model_name", "ix_jobs_created_id", "ix_jobs_status_created_id"} <= indexes
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"
    store.engine.dispose()
    JobStore(f"sqlite:///{tmp_path / 'old.db'}")  # opening again changes nothing


def test_the_migrations_build_the_schema_the_models_describe(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = JobStore(database_url)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_spec_stored_with_the_wires_strings_reads_typed_and_answers_as_before(database_url):
    """Specs written before the hyperparameters were typed hold the wire's strings; they read as
    :class:`Hyperparameters`, GetModelCustomizationJob still answers strings, and a spec written
    now holds numbers."""
    store = JobStore(database_url)
    job_id = _queued_job(store, "strings")
    earlier = spec_from_legacy({**LEGACY_REQUEST, "jobName": "strings"}).model_dump(mode="json")
    earlier["hyperparameters"] = {"epochCount": "3", "learningRate": "1e-05", "learningRateWarmupSteps": "10"}
    with store.session() as session:
        session.get(Job, job_id).spec_json = earlier
        session.commit()
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.spec.hyperparameters == Hyperparameters(epoch_count=3)
        assert job.spec.hyperparameters_sent == {"epochCount": "3"}  # as sent, never re-spelled
        assert wire.job_detail(job)["hyperParameters"] == LEGACY_REQUEST["hyperParametersResolved"]
        written = job.spec.model_dump(mode="json")["hyperparameters"]
    assert written == {"epoch_count": 3, "learning_rate": 1e-05, "learning_rate_warmup_steps": 10}
    assert JobSpec.model_validate({**earlier, "hyperparameters": written}).hyperparameters == Hyperparameters(epoch_count=3)


def test_a_status_column_holds_only_its_enums_values(database_url):
    store = JobStore(database_url)
    job_id = _queued_job(store, "typed")
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status is JobStatus.IN_PROGRESS and job.customization_type is CustomizationKind.FINE_TUNING
        job.status = "Running"
        with pytest.raises(StatementError, match="'Running' is not a valid JobStatus"):
            session.commit()


def test_bad_urls_and_unreachable_databases_are_one_clear_line(tmp_path):
    from service_harness import free_port

    with pytest.raises(StoreError, match=r"^the database URL is not one SQLAlchemy reads: expected dialect\+driver://"):
        JobStore("not-a-url:hunter2")
    with pytest.raises(StoreError, match=r"^database URL nosuch://x: Can't load plugin: sqlalchemy.dialects:nosuch$"):
        JobStore("nosuch://x")
    port = free_port()
    with pytest.raises(StoreError) as caught:
        JobStore(f"postgresql+psycopg://tune:hunter2@127.0.0.1:{port}/jobs")
    message = str(caught.value)
    assert message.startswith(f"cannot open the database postgresql+psycopg://tune:***@127.0.0.1:{port}/jobs: ")
    assert "\n" not in message and "hunter2" not in message


def _begun(store: JobStore, job_id: str) -> None:
    """A worker took the job up (validation began): losing it now loses work."""
    with store.session() as session:
        lifecycle.enter_phase(session.get(Job, job_id), lifecycle.Phase.VALIDATION)
        session.commit()


def _queued_job(store: JobStore, name: str = "queued") -> str:
    job_id = new_id()
    with store.session() as session:
        request = {**LEGACY_REQUEST, "jobName": name, "customModelName": f"{name}-model"}
        session.add(Job(id=job_id, arn=arns.job_arn("amazon.nova-micro-v1:0:128k", job_id), name=name, spec_json=request,
                        base_model_arn=arns.foundation_model_arn("amazon.nova-micro-v1:0:128k"), customization_type="FINE_TUNING",
                        output_model_name=f"{name}-model", status="InProgress", phases=lifecycle.new_phases(),
                        validation_losses=[], checkpoints=[], created=utcnow(), modified=utcnow()))
        session.commit()
    return job_id


HERE = lifecycle.Claimant("node-a", "server-a", dt.timedelta(seconds=30))
THERE = lifecycle.Claimant("node-b", "server-b", dt.timedelta(seconds=30))


def test_a_claim_loses_to_a_stop_that_came_first(database_url):
    """The supervisor reads a queued job, a stop lands, then the claim: the job stays Stopped."""
    store = JobStore(database_url)
    job_id = _queued_job(store)
    with store.session() as reader:
        seen = reader.get(Job, job_id)  # read while queued
        with store.session() as other:
            lifecycle.request_stop(other.get(Job, job_id))
            other.commit()
        assert lifecycle.claim(reader, seen, 4242, {}, HERE) is False
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Stopped" and job.worker_pid is None
        with pytest.raises(lifecycle.TransitionError, match="is Stopped: it cannot fail"):
            lifecycle.failed(job, "too late")


def test_two_servers_claim_one_job_and_one_wins(database_url):
    store = JobStore(database_url)
    job_id = _queued_job(store)
    with store.session() as first, store.session() as second:
        seen_first, seen_second = first.get(Job, job_id), second.get(Job, job_id)  # both read it queued
        assert lifecycle.claim(first, seen_first, 1111, {}, HERE) is True
        assert lifecycle.claim(second, seen_second, 2222, {}, THERE) is False
    with store.session() as session:
        job = session.get(Job, job_id)
        assert (job.worker_pid, job.worker_node, job.server_id) == (1111, "node-a", "server-a")
        assert dt.timedelta(seconds=29) < job.lease_expires - utcnow() <= dt.timedelta(seconds=30)
        assert lifecycle.renew(session, [job_id], "server-b", THERE.lease) == 0  # only the claimant renews
        assert lifecycle.renew(session, [job_id], "server-a", dt.timedelta(seconds=60)) == 1
        session.refresh(job)
        assert job.lease_expires - utcnow() > dt.timedelta(seconds=59)


def _supervisor(tmp_path, database_url: str, node: str, lease_seconds: float = 30):
    from tunesmith.jobs.settings import ServiceSettings
    from tunesmith.jobs.supervisor import Supervisor

    settings = ServiceSettings(home=tmp_path / "home", database_url=database_url, run_workers=False, devices=["cpu"],
                               node_name=node, lease_seconds=lease_seconds)
    supervisor = Supervisor(JobStore(database_url), settings)
    supervisor.settings.concurrency = 0  # watch only; start nothing
    return supervisor


@pytest.mark.parametrize("checkpoint", ["local", "s3", None], ids=["checkpoint", "s3-checkpoint", "none"])
def test_a_lapsed_lease_is_taken_over_by_another_node_and_a_live_one_is_not(tmp_path, database_url, checkpoint):
    from tunesmith.jobs.layout import JobFolder
    from tunesmith.jobs.supervisor import NO_CHECKPOINT_LAPSED
    from tunesmith.training.checkpoints import checkpoint_path

    other = _supervisor(tmp_path, database_url, "node-b")
    store = other.store
    live, lapsed = _queued_job(store, "live"), _queued_job(store, "lapsed")
    gone = dt.timedelta(seconds=-1)
    with store.session() as session:
        assert lifecycle.claim(session, session.get(Job, live), 999_999, {}, HERE)
        assert lifecycle.claim(session, session.get(Job, lapsed), 999_999, {}, lifecycle.Claimant("node-a", "server-a", gone))
    _begun(store, lapsed)
    if checkpoint == "local":  # on a shared home
        folder = checkpoint_path(JobFolder(tmp_path / "home", lapsed).run, 5)
        folder.mkdir(parents=True)
        (folder / "state.json").write_text("{}")
    elif checkpoint == "s3":  # uploaded by node-a's worker; nothing in this node's home
        with store.session() as session:
            session.get(Job, lapsed).checkpoints = [{"step": 5, "s3Uri": "s3://out/jobs/model-customization-job-x/checkpoints/step-000005"}]
            session.commit()
    other.tick()  # node-b: pid 999999 means nothing here; only the lease counts
    with store.session() as session:
        assert session.get(Job, live).worker_pid == 999_999
        job = session.get(Job, lapsed)
        if checkpoint:  # queued again, to resume from step 5 wherever it is claimed next
            assert job.status == "InProgress" and job.worker_pid is None and job.server_id is None and job.lease_expires is None
        else:
            assert job.status == "Failed" and job.failure_message == NO_CHECKPOINT_LAPSED


def test_a_restarted_server_checks_only_its_own_nodes_pids(tmp_path, database_url):
    import subprocess

    store = JobStore(database_url)
    mine, theirs = _queued_job(store, "mine"), _queued_job(store, "theirs")
    _begun(store, mine)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with store.session() as session:
        assert lifecycle.claim(session, session.get(Job, mine), gone.pid, {}, HERE)
        assert lifecycle.claim(session, session.get(Job, theirs), gone.pid, {}, THERE)
    _supervisor(tmp_path, database_url, "node-a").recover()
    with store.session() as session:
        assert session.get(Job, mine).status == "Failed"  # its worker is gone and nothing was checkpointed
        assert session.get(Job, theirs).worker_pid == gone.pid  # on node-b: its lease decides


def test_the_worker_gets_the_database_url_from_the_environment_not_its_command_line(tmp_path):
    from tunesmith.jobs.executors.local import worker_command
    from tunesmith.jobs.settings import ServiceSettings

    url = "postgresql+psycopg://tune:hunter2@db.internal:5432/jobs"
    settings = ServiceSettings(home=tmp_path / "home", database_url=url, devices=["cpu"])
    command = worker_command(settings, "abcdefghijkl")
    assert not any("hunter2" in part or "db.internal" in part or part == "--database" for part in command)
    assert command[command.index("--lease-seconds") + 1] == "30.0"


def test_a_dead_orphaned_worker_releases_its_job(tmp_path):
    """A worker that outlived an earlier server dies later: the running supervisor notices."""
    import subprocess

    from tunesmith.jobs.settings import ServiceSettings
    from tunesmith.jobs.supervisor import NO_CHECKPOINT, Supervisor

    settings = ServiceSettings(home=tmp_path / "home", run_workers=False, devices=["cpu"])
    store = JobStore(settings.database_url)
    job_id = _queued_job(store)
    _begun(store, job_id)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with store.session() as session:
        session.get(Job, job_id).worker_pid = gone.pid
        session.commit()
    supervisor = Supervisor(store, settings)
    supervisor.settings.concurrency = 0  # watch only; start nothing
    supervisor.tick()
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Failed" and job.failure_message == NO_CHECKPOINT


def _serve(tmp_path, *options: str):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    return CliRunner().invoke(cli, ["serve", "--home", str(tmp_path / "home"), "--devices", "cpu", *options], catch_exceptions=False)


def test_serve_stops_with_one_line_when_the_database_cannot_be_opened(tmp_path, monkeypatch):
    from service_harness import free_port

    monkeypatch.setenv("TUNESMITH_DATABASE_URL", f"postgresql+psycopg://tune:hunter2@127.0.0.1:{free_port()}/jobs")
    result = _serve(tmp_path)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot open the database postgresql+psycopg://tune:***@127.0.0.1:") and "hunter2" not in result.output


def test_serve_warns_of_a_password_on_its_command_line_and_reads_a_url_file(tmp_path):
    from service_harness import free_port

    url = f"postgresql+psycopg://tune:hunter2@127.0.0.1:{free_port()}/jobs"
    result = _serve(tmp_path, "--database", url)
    assert result.output.startswith("warning: the database password on the command line is visible to every user in ps; "
                                    "set TUNESMITH_DATABASE_URL or use --database-url-file\n")
    (tmp_path / "url").write_text(url + "\n")
    result = _serve(tmp_path, "--database-url-file", str(tmp_path / "url"))
    assert result.output.startswith("error: cannot open the database postgresql+psycopg://tune:***@")  # no warning: not in ps


def test_a_workers_heartbeat_renews_its_claim_until_the_job_is_no_longer_its_own(database_url):
    from tunesmith.jobs.heartbeat import LeaseHeartbeat

    store = JobStore(database_url)
    job_id = _queued_job(store)
    with store.session() as session:
        assert lifecycle.claim(session, session.get(Job, job_id), 4242, {}, lifecycle.Claimant("node-a", "server-a", dt.timedelta(0)))
    heartbeat = LeaseHeartbeat(store, job_id, lease_seconds=60)
    assert heartbeat.beat() is True and heartbeat.server_id == "server-a"
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.lease_expires - utcnow() > dt.timedelta(seconds=59)
        lifecycle.requeued(job)  # the worker went away; another server may claim it now
        session.commit()
    assert heartbeat.beat() is False
