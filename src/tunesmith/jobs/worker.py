"""One job, run in its own process: fetch and validate the data, train, publish the outputs.

``python -m tunesmith.jobs.worker --home H --job ID [--allow-path DIR ...] [--device D] [--save-every N] [--lease-seconds S]``
is started by the supervisor, with the database URL in ``TUNESMITH_DATABASE_URL`` (never on the
command line, which ``ps`` shows to every user); it renews the job's lease while it runs
(:mod:`~tunesmith.jobs.heartbeat`). The process owns the job's row while it runs: it moves the
phases along (validation -> data processing -> training) through
:mod:`~tunesmith.jobs.lifecycle`, writes the latest training loss after every step,
honours a stop request between micro-batches, and on success registers the custom model.
A crash leaves the last checkpoint in place for the supervisor to resume from.

A job with several devices runs this module under torchrun. All ranks join the process
group at once; rank 0 does all of the above and broadcasts what to train on (or that there
is nothing to train) with ``torch.distributed``; the other ranks then train beside it and
exit (they report nothing; a stop reaches them through the training loop).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tunesmith import guide
from tunesmith.datasets import DatasetKind, validate_dataset
from tunesmith.devices import resolve_device
from tunesmith.jobs import arns, artifacts, lifecycle, parent_death, uris
from tunesmith.jobs.heartbeat import LeaseHeartbeat
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.lifecycle import Phase, TransitionError
from tunesmith.jobs.logs import LOG_LEVELS, configure_logging
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE
from tunesmith.jobs.spec import JobSpec
from tunesmith.jobs.store import CustomModel, Job, JobStore, new_id
from tunesmith.statuses import JobStatus, ModelStatus
from tunesmith.tiers import UnknownModelError, resolve_tier
from tunesmith.training import RunResult, StepInfo, TrainConfig, TrainingRun, distributed, finetune
from tunesmith.training.checkpoints import checkpoint_path, latest_checkpoint, list_checkpoints
from tunesmith.training.distributed import world_from_environment
from tunesmith.training.metrics import EVENTS, TRAINING_CSV, VALIDATION_CSV

log = logging.getLogger("tunesmith.service.jobs")
STOP_POLL_SECONDS = 1.0
RANK_WAIT = dt.timedelta(hours=24)
"""How long ranks wait for rank 0 at a collective: a distillation's teacher phase runs first."""


class JobFailed(Exception):
    """A failure the user can act on; its message becomes ``failureMessage``."""


class JobWorker:
    def __init__(self, store: JobStore, home: Path, job_id: str, save_every: int | None = None, device: str = "auto",
                 allowed_roots: Sequence[str] = (), max_memory_gb: float | None = None):
        self.store, self.job_id, self.save_every, self.device = store, job_id, save_every, device
        self.max_memory_gb = max_memory_gb
        """The job's memory budget when it shares its GPU with other jobs (``serve --jobs-per-device``)."""
        self.allowed_roots = [str(home), *allowed_roots]
        """Where the job's data and outputs may be: its server's ``--allow-path`` folders, and home."""
        self.folder = JobFolder(home, job_id)
        self.world = world_from_environment()
        self._last_poll, self._stop_seen, self._handed_off = 0.0, False, False
        self.run: TrainingRun | None = None
        self.uploader: artifacts.CheckpointUploader | None = None
        """Sends checkpoints to S3 when the job's output is there (rank 0 only)."""
        self.model_uri: str | None = None
        self.output: uris.Location | None = None

    # -- the job's row ----------------------------------------------------------------------
    def change(self, apply: Callable[[Job], None]) -> Job:
        """Apply ``apply`` to the job's row and commit."""
        with self.store.session() as session:
            job = session.get(Job, self.job_id)
            apply(job)
            session.commit()
            return job

    def job(self) -> Job:
        with self.store.session() as session:
            return session.get(Job, self.job_id)

    def stop_requested(self) -> bool:
        """Polled between micro-batches: asks the database at most once a second."""
        now = time.monotonic()
        if not self._stop_seen and now - self._last_poll >= STOP_POLL_SECONDS:
            self._last_poll = now
            self._stop_seen = bool(self.job().stop_requested)
        return self._stop_seen

    # -- the work ---------------------------------------------------------------------------
    def execute(self) -> None:
        if self.world.distributed:
            distributed.join(self.world, resolve_device(self.device), timeout=RANK_WAIT)
        if not self.world.is_main:
            self.follow()
            return

        try:  # under torchrun the supervisor watches the agent's pid, not this rank's
            job = self.change(lambda j: lifecycle.worker_started(j, None if self.world.distributed else os.getpid()))
        except TransitionError:  # stopped before this process started: nothing to do
            log.info("job %s: stopped before this worker started; nothing to do", self.job_id)
            self._hand_off(None)
            return
        log.info("job %s (%s) started: attempt %d, pid %d", job.name, self.job_id, job.attempts, os.getpid())
        try:
            self._execute(job.spec)
        except TransitionError:  # the job ended under this worker (stopped meanwhile): leave it as it is
            pass
        except JobFailed as exc:
            self.fail(str(exc))
        except Exception as exc:  # anything else: still a clear, bounded failure message
            self.fail(f"{type(exc).__name__}: {exc}")
            if self._handed_off:  # the other ranks are mid-training: a non-zero exit makes torchrun stop them
                raise SystemExit(1) from exc
        finally:
            self._hand_off(None)  # the other ranks, if still waiting, learn there is nothing to train

    def fail(self, message: str) -> None:
        log.info("job %s failed: %s", self.job_id, message)
        try:
            self.change(lambda job: lifecycle.failed(job, message))
        except TransitionError:  # already ended (stopped meanwhile): the stop stands
            pass

    def _execute(self, spec: JobSpec) -> None:
        config = self.prepare_training(spec)
        if config is None:
            return
        if self.world.distributed:
            self._hand_off(config)
        result = finetune(config, on_step=self._on_step, stop=self.stop_requested, on_start=self._on_start)
        self.finish_training(spec, result)

    def start(self) -> JobSpec | None:
        """Mark the job as running in this process; its spec, or None when it was stopped before."""
        try:
            job = self.change(lambda j: lifecycle.worker_started(j, os.getpid()))
        except TransitionError:
            log.info("job %s: stopped before this worker started; nothing to do", self.job_id)
            return None
        log.info("job %s (%s) started: attempt %d, pid %d", job.name, self.job_id, job.attempts, os.getpid())
        return job.spec

    def finish_training(self, spec: JobSpec, result: RunResult) -> None:
        """After training: the stop recorded, or the outputs published and the model registered."""
        if result.stopped:
            self._after_stop(result)
            return
        self._publish(spec)
        self._register_model(spec, result)

    def prepare_training(self, spec: JobSpec) -> TrainConfig | None:
        """Validation and data processing (the teacher's answers, for distillation): the run's
        config, or None when the job was stopped meanwhile. Raises JobFailed for bad data."""
        kind = spec.dataset_kind
        self.change(lambda j: lifecycle.enter_phase(j, Phase.VALIDATION))
        located = self._locate([("trainingDataConfig.s3Uri", spec.training_uri), ("outputDataConfig.s3Uri", spec.output_uri),
                                *[(f"validationDataConfig.validators[{i}].s3Uri", u) for i, u in enumerate(spec.validation_uris)]])
        self.output = located[1]
        try:
            training = uris.fetch(located[0], self.folder.data, "train.jsonl")
            validation = [uris.fetch(v, self.folder.data, f"validation-{i}.jsonl") for i, v in enumerate(located[2:])]
        except Exception as exc:
            raise JobFailed(f"cannot read the data: {exc}") from exc
        report = validate_dataset(training, validation, kind)
        if not report.valid:
            shown = "\n".join(str(p) for p in report.log.errors[:10])
            more = f"\n... and {report.log.error_count - 10} more" if report.log.error_count > 10 else ""
            raise JobFailed(f"the data is not valid ({report.log.error_count} error(s)):\n{shown}{more}")
        self.change(lambda j: lifecycle.enter_phase(j, Phase.DATA_PROCESSING))
        if kind is DatasetKind.DISTILLATION:
            training = self._synthesize(spec, training)
            if training is None:
                return None
            kind, validation = DatasetKind.FINE_TUNING, []

        self._start_uploads(spec)
        resume = latest_checkpoint(self.folder.run) is not None or self._fetch_checkpoint()
        return self._train_config(spec, training, validation, kind, resume=resume)

    def _locate(self, fields: list[tuple[str, str]]) -> list[uris.Location]:
        """The job's locations, checked again here: the spec may predate the checks, or the
        server that created the job may allow other folders than this one."""
        located = []
        for field, uri in fields:
            try:
                located.append(uris.locate(uri, self.allowed_roots))
            except uris.UriError as exc:
                raise JobFailed(f"{field}: {exc}") from None
        return located

    def _train_config(self, spec: JobSpec, training: Path, validation: list[Path], kind: DatasetKind, resume: bool) -> TrainConfig:
        return TrainConfig(
            data=training, validation=validation, output=self.folder.run, model=spec.tier, kind=kind,
            hyperparameters=spec.hyperparameters, hyperparameters_sent=dict(spec.hyperparameters_sent),
            resume=resume, save_every=self.save_every, device=self.device, max_memory=self.max_memory_gb,
            early_stopping_patience=spec.early_stopping_patience if validation else None, eval_every=spec.eval_every,
            duplication=spec.duplication,
        )

    # -- several ranks ----------------------------------------------------------------------
    def _hand_off(self, config: TrainConfig | None) -> None:
        """Rank 0 tells the other ranks what to train on (None: nothing); once per run."""
        if not self.world.distributed or self._handed_off:
            return
        self._handed_off = True
        handoff = None if config is None else {"data": str(config.data), "validation": [str(p) for p in config.validation],
                                               "kind": config.kind.value, "resume": config.resume}
        distributed.broadcast_from_main(self.world, handoff)

    def follow(self) -> None:
        """A rank other than 0: wait for rank 0's word, then train beside it (or return when
        rank 0 ends the job before training: bad data, a stop)."""
        handoff = distributed.broadcast_from_main(self.world, None)
        if handoff is None:
            return
        config = self._train_config(self.job().spec, Path(handoff["data"]), [Path(p) for p in handoff["validation"]],
                                    DatasetKind(handoff["kind"]), handoff["resume"])
        finetune(config)

    def _on_start(self, run: TrainingRun) -> None:
        self.run = run
        warnings, plan = list(run.warnings), run.plan.as_dict()
        # What ran the job, for its record; the supervisor noted the devices it handed out.
        compute = {"precision": run.placement.precision, "worldSize": run.world.size}

        def start(job: Job) -> None:
            held = {} if (job.details or {}).get("devices") else {"devices": [str(run.placement.device)]}  # started by hand
            job.details = {**(job.details or {}), "warnings": warnings, "plan": plan, **held, **compute}
            lifecycle.enter_phase(job, Phase.TRAINING)

        self.change(start)

    def _after_stop(self, result: RunResult) -> None:
        try:  # the stop's checkpoint too: another host may resume the job
            self._finish_uploads()
        except JobFailed as exc:  # the checkpoint is still here, for this host to resume from
            log.warning("job %s: %s", self.job_id, exc)
        checkpoints = self._checkpoints()
        if self.job().stop_requested:  # StopModelCustomizationJob
            def stop(job: Job) -> None:
                job.checkpoints = checkpoints
                lifecycle.stopped(job)
        else:  # SIGINT/SIGTERM (server shutting down): queued to resume from the checkpoint
            def stop(job: Job) -> None:
                job.checkpoints = checkpoints
                lifecycle.requeued(job)
        job = self.change(stop)
        log.info("job %s: %s at step %d", self.job_id, "stopped" if job.status == JobStatus.STOPPED
                 else "interrupted; queued to resume", result.state.step)

    def _synthesize(self, spec: JobSpec, prompts: Path) -> Path | None:
        """The teacher phase (resumable); returns the synthetic training file, or None if stopped."""
        from tunesmith.distillation.synthesis import SYNTHETIC, synthesize
        from tunesmith.distillation.teachers import LocalTeacher

        with self.store.session() as session:
            model = self.store.model(session, spec.teacher)
        if model is None:  # a tier; never a path, which resolve_model would also take
            try:
                resolve_tier(spec.teacher)
            except UnknownModelError:
                raise JobFailed(f"the teacher {spec.teacher} is neither a model tier nor a custom model of this server "
                                "(was it deleted?)") from None
        teacher = LocalTeacher.load(model.folder if model is not None else spec.teacher, device=self.device)
        try:
            report = synthesize(prompts, teacher, self.folder.synthesis, spec.max_response_length, stop=self.stop_requested)
        except InterruptedError:
            self.change(lifecycle.stopped)
            return None
        if report.training_records < guide.MIN_RECORDS:
            raise JobFailed(f"only {report.training_records} usable training records after the teacher answered "
                            f"(at least {guide.MIN_RECORDS} needed); rejected: {dict(report.rejected)}")
        return self.folder.synthesis / SYNTHETIC

    def _on_step(self, info: StepInfo) -> None:
        if self.uploader is not None:
            try:
                self.uploader.offer()  # the checkpoint this step wrote, if any, starts uploading
            except artifacts.ArtifactError as exc:
                raise JobFailed(str(exc)) from exc
        checkpoints = self._checkpoints()
        validation = [row[2] for row in self.run.state.history["validation"]] if self.run else []

        def record(job: Job) -> None:
            job.training_loss = round(info.loss, 6)
            job.checkpoints = checkpoints
            if validation:
                job.validation_losses = validation
            job.modified = lifecycle.utcnow()

        self.change(record)

    def _checkpoints(self) -> list[dict]:
        uploaded = self.uploader.uploaded if self.uploader is not None else {}
        return [{"step": int(p.name.split("-")[1]), "path": str(p), **({"s3Uri": uploaded[p.name]} if p.name in uploaded else {})}
                for p in list_checkpoints(self.folder.run)]

    # -- artifacts on S3 --------------------------------------------------------------------
    def _start_uploads(self, spec: JobSpec) -> None:
        if uris.is_s3(spec.output_uri):
            self.uploader = artifacts.CheckpointUploader(self.folder.run, artifacts.job_prefix(spec.output_uri, self.job_id))

    def _fetch_checkpoint(self) -> bool:
        """This host has no checkpoint of the job: the newest one on S3 (another host ran the
        job before), if the output is there and holds one; True if one came."""
        if self.uploader is None:
            return False
        prefix = self.uploader.prefix_uri
        try:
            step = artifacts.download_latest_checkpoint(prefix, self.folder.run)
        except artifacts.ArtifactError as exc:
            raise JobFailed(str(exc)) from exc
        if step is None:
            return False
        self.uploader.already_uploaded(checkpoint_path(self.folder.run, step))
        log.info("job %s: no local checkpoint; downloaded step %d from %s", self.job_id, step, prefix)
        return True

    def _finish_uploads(self) -> None:
        if self.uploader is not None:
            try:
                self.uploader.finish()
            except artifacts.ArtifactError as exc:
                raise JobFailed(str(exc)) from exc

    def _publish(self, spec: JobSpec) -> None:
        if uris.is_s3(spec.output_uri):  # the trained model, for any host to serve
            self._finish_uploads()
            try:
                self.model_uri = artifacts.upload_result(self.folder.run, artifacts.job_prefix(spec.output_uri, self.job_id))
            except artifacts.ArtifactError as exc:
                raise JobFailed(str(exc)) from exc
        prefix = f"model-customization-job-{self.job_id}"
        for relative in (TRAINING_CSV, VALIDATION_CSV, EVENTS, Path("manifest.json"), Path("loss_curve.png")):
            source = self.folder.run / relative
            if source.exists():
                uris.publish(source, self.output, f"{prefix}/{relative.as_posix()}")
        for name in ("synthetic.jsonl", "prompt_report.json", "rejected.jsonl"):  # distillation's teacher phase
            source = self.folder.synthesis / name
            if source.exists():
                uris.publish(source, self.output, f"{prefix}/distillation/{name}")

    def _register_model(self, spec: JobSpec, result: RunResult) -> None:
        model_id = new_id()
        arn = arns.model_arn(spec.base_model_id, model_id)
        manifest = result.manifest
        with self.store.session() as session:
            job = session.get(Job, self.job_id)
            session.add(CustomModel(
                id=model_id, arn=arn, name=job.output_model_name, job_arn=job.arn, job_name=job.name,
                base_model_arn=job.base_model_arn, customization_type=job.customization_type, status=ModelStatus.ACTIVE,
                folder=str(self.folder.run), details={"result": manifest["result"], **({"modelUri": self.model_uri} if self.model_uri else {})},
            ))
            job.checkpoints = self._checkpoints()
            job.validation_losses = [row[2] for row in result.state.history["validation"]]
            job.training_loss = manifest["result"]["finalTrainingLoss"]
            job.details = {**(job.details or {}), "warnings": list(result.warnings)}
            lifecycle.completed(job, arn)
            session.commit()
        log.info("job %s completed: model %s", self.job_id, arn)


def main() -> None:
    parent_death.die_with_parent_if_asked()  # started by a Ray task: never outlive it (nor, as a rank, the torchrun agent)
    parser = argparse.ArgumentParser(description="Run one tunesmith customization job.")
    parser.add_argument("--home", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--allow-path", action="append", default=[], help="A folder the job's data and outputs may be in (repeatable; "
                        "--home always is): the server's own.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (the supervisor sets CUDA_VISIBLE_DEVICES).")
    parser.add_argument("--save-every", type=int, default=None, help="Also checkpoint every N optimizer steps.")
    parser.add_argument("--max-memory", type=float, default=None, help="The job's memory budget in GB (its share of a GPU).")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="What goes to the job's log (stderr).")
    parser.add_argument("--lease-seconds", type=float, default=None, help="Renew the job's lease every third of this (the server's).")
    args = parser.parse_args()
    url = os.environ.get(DATABASE_URL_VARIABLE)  # not an argument: a password there would show in `ps`
    if not url:
        parser.error(f"{DATABASE_URL_VARIABLE} is not set: the supervisor passes the database URL there")
    configure_logging(args.log_level)
    store = JobStore(url, migrate=False)  # the server migrated it before starting this worker
    with LeaseHeartbeat(store, args.job, args.lease_seconds) if args.lease_seconds else contextlib.nullcontext():
        JobWorker(store, Path(args.home), args.job, args.save_every, args.device, args.allow_path, args.max_memory).execute()


if __name__ == "__main__":
    main()
