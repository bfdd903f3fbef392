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
