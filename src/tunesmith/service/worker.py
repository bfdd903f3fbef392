"""One job, run in its own process: fetch and validate the data, train, publish the outputs.

``python -m tunesmith.service.worker --home H --database URL --job ID`` is started by the
supervisor. The process owns the job's row while it runs: it moves the phases along
(validation -> data processing -> training), writes the latest training loss after every
step, honours stop requests after the current step, and on success registers the custom
model. A crash leaves the last checkpoint in place for the supervisor to resume from.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from tunesmith.datasets import DatasetKind, validate_dataset
from tunesmith.service import uris, wire
from tunesmith.service.store import CustomModel, Job, JobStore, new_id, utcnow
from tunesmith.training import StepInfo, TrainConfig, TrainingRun, write_results
from tunesmith.training.checkpoints import latest_checkpoint, list_checkpoints
from tunesmith.training.metrics import EVENTS, TRAINING_CSV, VALIDATION_CSV
from tunesmith.tiers import resolve_tier

STOP_POLL_SECONDS = 1.0
MAX_FAILURE_MESSAGE = 2048


class JobFailed(Exception):
    """A failure the user can act on; its message becomes ``failureMessage``."""


class JobWorker:
    def __init__(self, store: JobStore, home: Path, job_id: str):
        self.store, self.home, self.job_id = store, home, job_id
        self.folder = home / "jobs" / job_id
        self._last_poll = 0.0
        self.run: TrainingRun | None = None

    # -- job row helpers --------------------------------------------------------------------
    def update(self, **fields) -> Job:
        with self.store.session() as session:
            job = session.get(Job, self.job_id)
            phase_changes = fields.pop("phases", {})
            if phase_changes:
                stamp = wire.timestamp(utcnow())
                phases = dict(job.phases)
                for name, status in phase_changes.items():
                    phases[name] = {**phases[name], "status": status, "lastModifiedTime": stamp}
                job.phases = phases
            for key, value in fields.items():
                setattr(job, key, value)
            job.modified = utcnow()
            session.commit()
            return job

    def job(self) -> Job:
        with self.store.session() as session:
            return session.get(Job, self.job_id)

    # -- the work ---------------------------------------------------------------------------
    def execute(self) -> None:
        job = self.update(worker_pid=os.getpid(), attempts=self.job().attempts + 1)
        try:
            self._execute(job)
        except JobFailed as exc:
            self._fail(str(exc))
        except Exception as exc:  # anything else: still a clear, bounded failure message
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, message: str) -> None:
        job = self.job()
        phases = {k: "Failed" for k, v in job.phases.items() if v["status"] == "InProgress"}
        self.update(status="Failed", failure_message=message[:MAX_FAILURE_MESSAGE], ended=utcnow(), phases=phases, worker_pid=None)

    def _execute(self, job: Job) -> None:
        request = job.request
        kind = {"CONTINUED_PRE_TRAINING": DatasetKind.PRETRAINING, "DISTILLATION": DatasetKind.DISTILLATION}.get(
            job.customization_type, DatasetKind.FINE_TUNING
        )
        self.update(phases={"validationDetails": "InProgress"})
        data_folder = self.folder / "data"
        try:
            training = uris.fetch(request["trainingDataConfig"]["s3Uri"], data_folder, "train.jsonl")
            validation = [
                uris.fetch(v["s3Uri"], data_folder, f"validation-{i}.jsonl")
                for i, v in enumerate(request["validationDataConfig"].get("validators", []))
            ]
        except Exception as exc:
            raise JobFailed(f"cannot read the data: {exc}") from exc
        report = validate_dataset(training, validation, kind)
        if not report.valid:
            shown = "\n".join(str(p) for p in report.log.errors[:10])
            more = f"\n... and {report.log.error_count - 10} more" if report.log.error_count > 10 else ""
            raise JobFailed(f"the data is not valid ({report.log.error_count} error(s)):\n{shown}{more}")
        self.update(phases={"validationDetails": "Completed", "dataProcessingDetails": "InProgress"})
        if kind is DatasetKind.DISTILLATION:
            training = self._synthesize(request, training)
            if training is None:
                return
            kind, validation = DatasetKind.FINE_TUNING, []

        tier = resolve_tier(job.base_model_arn.rsplit("/", 1)[-1])
        run_folder = self.folder / "run"
        config = TrainConfig(
            data=training, validation=validation, output=run_folder, model=tier.name, kind=kind,
            hyperparameters=_hyperparameters(request), hyperparameters_sent=dict(request.get("hyperParameters") or {}),
            resume=latest_checkpoint(run_folder) is not None, save_every=int(os.environ.get("TUNESMITH_SAVE_EVERY", "0")) or None,
        )
        self.run = TrainingRun(config, self._on_step)
        self.run.setup()
        self.update(phases={"dataProcessingDetails": "Completed", "trainingDetails": "InProgress"})
        if self.job().stop_requested:
            self.run.request_stop()
        state = self.run.train()
        if state.stopped and self.job().stop_requested:
            self.update(status="Stopped", ended=utcnow(), phases={"trainingDetails": "Stopped"}, worker_pid=None,
                        checkpoints=self._checkpoints())
            return
        if state.stopped:  # SIGINT/SIGTERM (server shutting down): queue it to resume from the checkpoint
            self.update(worker_pid=None, checkpoints=self._checkpoints())
            return
        manifest = write_results(self.run)
        self._publish(job, request["outputDataConfig"]["s3Uri"])
        self._register_model(job, run_folder, manifest)

    def _synthesize(self, request: dict, prompts: Path) -> Path | None:
        """The teacher phase (resumable); returns the synthetic training file, or None if stopped."""
        from tunesmith.distillation.synthesis import SYNTHETIC, synthesize
        from tunesmith.distillation.teachers import LocalTeacher

        config = request["customizationConfig"]["distillationConfig"]["teacherModelConfig"]
        identifier = config["teacherModelIdentifier"]
        with self.store.session() as session:
            model = self.store.model(session, identifier)
        teacher = LocalTeacher.load(model.folder if model is not None else resolve_tier(identifier).name)
        folder = self.folder / "synthesis"
        try:
            report = synthesize(prompts, teacher, folder, config.get("maxResponseLengthForInference", 512),
                                stop=lambda: self.job().stop_requested)
        except InterruptedError:
            self.update(status="Stopped", ended=utcnow(), phases={"dataProcessingDetails": "Stopped"}, worker_pid=None)
            return None
        if report.training_records < 8:
            raise JobFailed(f"only {report.training_records} usable training records after the teacher answered "
                            f"(at least 8 needed); rejected: {dict(report.rejected)}")
        return folder / SYNTHETIC

    def _on_step(self, info: StepInfo) -> None:
        fields = {"training_loss": round(info.loss, 6)}
        if self.run is not None and self.run.state.history["validation"]:
            fields["validation_losses"] = [row[2] for row in self.run.state.history["validation"]]
        fields["checkpoints"] = self._checkpoints()
        job = self.update(**fields)
        now = time.monotonic()
        if job.stop_requested or (now - self._last_poll > STOP_POLL_SECONDS and self.job().stop_requested):
            self.run.request_stop()
        self._last_poll = now

    def _checkpoints(self) -> list[dict]:
        return [{"step": int(p.name.split("-")[1]), "path": str(p)} for p in list_checkpoints(self.folder / "run")]

    def _publish(self, job: Job, output_uri: str) -> None:
        prefix = f"model-customization-job-{job.id}"
        run_folder = self.folder / "run"
        for relative in (TRAINING_CSV, VALIDATION_CSV, EVENTS, Path("manifest.json"), Path("loss_curve.png")):
            source = run_folder / relative
            if source.exists():
                uris.publish(source, output_uri, f"{prefix}/{relative.as_posix()}")
        for name in ("synthetic.jsonl", "prompt_report.json", "rejected.jsonl"):  # distillation's teacher phase
            source = self.folder / "synthesis" / name
            if source.exists():
                uris.publish(source, output_uri, f"{prefix}/distillation/{name}")

    def _register_model(self, job: Job, run_folder: Path, manifest: dict) -> None:
        base_id = job.base_model_arn.rsplit("/", 1)[-1]
        model_id = new_id()
        arn = wire.model_arn(base_id, model_id)
        with self.store.session() as session:
            session.add(CustomModel(
                id=model_id, arn=arn, name=job.output_model_name, job_arn=job.arn, job_name=job.name,
                base_model_arn=job.base_model_arn, customization_type=job.customization_type, status="Active",
                folder=str(run_folder), details={"result": manifest["result"]},
            ))
            row = session.get(Job, job.id)
            row.status, row.output_model_arn, row.ended, row.modified = "Completed", arn, utcnow(), utcnow()
            row.worker_pid = None
            row.phases = {k: {**v, "status": "Completed"} for k, v in row.phases.items()}
            row.checkpoints = self._checkpoints()
            row.validation_losses = [r[2] for r in self.run.state.history["validation"]]
            row.training_loss = manifest["result"]["finalTrainingLoss"]
            session.commit()


def _hyperparameters(request: dict):
    from tunesmith.hyperparameters import Hyperparameters

    return Hyperparameters.from_wire(request["hyperParametersResolved"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one tunesmith customization job.")
    parser.add_argument("--home", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--job", required=True)
    args = parser.parse_args()
    JobWorker(JobStore(args.database), Path(args.home), args.job).execute()


if __name__ == "__main__":
    main()
