"""The store opens a database an earlier tunesmith wrote: a missing column is added, and a job
kept as a raw request (before typed specs) still reads."""

import sqlite3

from tunesmith.service import lifecycle, wire
from tunesmith.service.store import Job, JobStore, new_id, utcnow

LEGACY_REQUEST = {
    "jobName": "old-job", "customModelName": "old-model", "roleArn": "arn:aws:iam::123456789012:role/r",
    "baseModelIdentifier": "amazon.nova-micro-v1:0:128k", "customizationType": "FINE_TUNING",
    "trainingDataConfig": {"s3Uri": "/data/t.jsonl"}, "outputDataConfig": {"s3Uri": "/data/out"},
    "validationDataConfig": {"validators": [{"s3Uri": "/data/v.jsonl"}]}, "hyperParameters": {"epochCount": "3"},
    "hyperParametersResolved": {"epochCount": "3", "learningRate": "1e-05", "learningRateWarmupSteps": "10"},
}


def test_an_older_database_upgrades_in_place_and_old_jobs_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = JobStore(url)
    with store.session() as session:
        job_id = new_id()
        session.add(Job(id=job_id, arn=wire.job_arn("amazon.nova-micro-v1:0:128k", job_id), name="old-job",
                        spec_json=LEGACY_REQUEST, base_model_arn=wire.foundation_model_arn("amazon.nova-micro-v1:0:128k"),
                        customization_type="FINE_TUNING", output_model_name="old-model", status="InProgress",
                        phases=lifecycle.new_phases(), validation_losses=[], checkpoints=[], created=utcnow(), modified=utcnow()))
        session.commit()
    store.engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute("ALTER TABLE jobs DROP COLUMN details")

    store = JobStore(url)
    with store.session() as session:
        detail = wire.job_detail(store.job(session, "old-job"))
    assert detail["hyperParameters"] == LEGACY_REQUEST["hyperParametersResolved"]
    assert detail["validationDataConfig"] == {"validators": [{"s3Uri": "/data/v.jsonl"}]}
    assert detail["roleArn"] == LEGACY_REQUEST["roleArn"]
    assert store.job(store.session(), "old-job").spec.tier == "micro"


def _queued_job(store: JobStore, name: str = "queued") -> str:
    job_id = new_id()
    with store.session() as session:
        request = {**LEGACY_REQUEST, "jobName": name, "customModelName": f"{name}-model"}
        session.add(Job(id=job_id, arn=wire.job_arn("amazon.nova-micro-v1:0:128k", job_id), name=name, spec_json=request,
                        base_model_arn=wire.foundation_model_arn("amazon.nova-micro-v1:0:128k"), customization_type="FINE_TUNING",
                        output_model_name=f"{name}-model", status="InProgress", phases=lifecycle.new_phases(),
                        validation_losses=[], checkpoints=[], created=utcnow(), modified=utcnow()))
        session.commit()
    return job_id


def test_a_claim_loses_to_a_stop_that_came_first(tmp_path):
    """The supervisor reads a queued job, a stop lands, then the claim: the job stays Stopped."""
    import pytest

    store = JobStore(f"sqlite:///{tmp_path / 'db'}")
    job_id = _queued_job(store)
    with store.session() as reader:
        seen = reader.get(Job, job_id)  # read while queued
        with store.session() as other:
            lifecycle.request_stop(other.get(Job, job_id))
            other.commit()
        assert lifecycle.claim(reader, seen, 4242, {}) is False
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Stopped" and job.worker_pid is None
        with pytest.raises(lifecycle.TransitionError, match="is Stopped: it cannot fail"):
            lifecycle.failed(job, "too late")


def test_a_dead_orphaned_worker_releases_its_job(tmp_path):
    """A worker that outlived an earlier server dies later: the running supervisor notices."""
    import subprocess

    from tunesmith.service.settings import ServiceSettings
    from tunesmith.service.supervisor import NO_CHECKPOINT, Supervisor

    settings = ServiceSettings(home=tmp_path / "home", run_workers=False, devices=["cpu"])
    store = JobStore(settings.database_url)
    job_id = _queued_job(store)
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
