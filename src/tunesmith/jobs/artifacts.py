"""A job's checkpoints and trained model on S3, so that another host can resume the job or serve the model.

When ``outputDataConfig.s3Uri`` is on S3, the job's prefix there mirrors its run folder:

    OUTPUT/model-customization-job-ID/checkpoints/step-000042/...   each checkpoint, uploaded as it is written
    OUTPUT/model-customization-job-ID/manifest.json, model/, adapter/   the trained model: a result folder

A checkpoint's ``state.json`` goes up last, so a checkpoint counts on S3 only once all of it is
there (as locally, where :func:`~tunesmith.training.checkpoints.list_checkpoints` wants it).
Checkpoints upload in a background thread: training goes on while one uploads. A failed upload
is tried :data:`ATTEMPTS` times, then the job fails with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tunesmith.jobs import uris
from tunesmith.training.checkpoints import PREFIX, checkpoint_dir, list_checkpoints

log = logging.getLogger("tunesmith.service.jobs")
ATTEMPTS = 3
"""Tries per upload or download (boto3 also retries each request itself)."""
RETRY_SECONDS = 1.0
"""The wait before the second try; it doubles after each failure."""
RESULT_PARTS = ("manifest.json", "model", "adapter")
"""What of a result folder goes to S3 as the trained model (``resolve_model`` needs manifest.json and model/)."""


class ArtifactError(Exception):
    """An upload or download that failed every try; the message says what and why."""


def job_prefix(output_uri: str, job_id: str) -> str:
    """Where a job's outputs go: the same prefix its metrics are published under."""
    return f"{output_uri.rstrip('/')}/model-customization-job-{job_id}"


def retried(what: str, action: Callable[[], None], attempts: int = ATTEMPTS) -> None:
    """Run ``action``, trying again after a failure; ArtifactError naming ``what`` when every try failed."""
    delay = RETRY_SECONDS
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except Exception as exc:  # botocore's errors, OSError, ...: all worth another try
            if attempt == attempts:
                raise ArtifactError(f"cannot {what} ({attempts} attempts): {exc}") from exc
            log.warning("could not %s (attempt %d of %d): %s; trying again in %.0f s", what, attempt, attempts, exc, delay)
            time.sleep(delay)
            delay *= 2


# -- folders on S3 ----------------------------------------------------------------------------
def objects(uri: str) -> Iterator[tuple[str, int]]:
    """(path relative to ``uri``, size in bytes) of every object under the prefix ``uri``."""
    bucket, prefix = uris.split_s3(uri)
    prefix = f"{prefix}/" if prefix else ""
    for page in uris.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"][len(prefix):], item["Size"]


def upload_folder(folder: Path, uri: str, last: str | None = None) -> None:
    """Every file under ``folder`` to ``uri``/relative path; the file ``last`` (relative) after all others."""
    client, (bucket, prefix) = uris.s3_client(), uris.split_s3(uri)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(folder).as_posix() == last)  # stable: ``last`` moves to the end
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def download_folder(uri: str, folder: Path, parts: tuple[str, ...] | None = None) -> int:
    """The objects under ``uri`` (those under ``parts`` only, if given) into ``folder``, which
    appears complete or not at all; returns the bytes downloaded."""
    client, (bucket, prefix) = uris.s3_client(), uris.split_s3(uri)
    staging = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    total = 0
    try:
        for relative, size in objects(uri):
            if parts is not None and relative.split("/", 1)[0] not in parts:
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, f"{prefix}/{relative}", str(target))
            total += size
        if not staging.is_dir():
            raise FileNotFoundError(f"nothing is stored under {uri}")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return total


def delete_prefix(uri: str) -> None:
    client, (bucket, prefix) = uris.s3_client(), uris.split_s3(uri)
    for relative, _ in list(objects(uri)):
        client.delete_object(Bucket=bucket, Key=f"{prefix}/{relative}")


# -- checkpoints ------------------------------------------------------------------------------
def checkpoint_uri(prefix_uri: str, checkpoint: Path) -> str:
    return f"{prefix_uri}/checkpoints/{checkpoint.name}"


def remote_checkpoints(prefix_uri: str) -> list[str]:
    """Names (``step-000042``) of the complete checkpoints under a job's prefix, oldest first."""
    names = {relative.split("/")[0] for relative, _ in objects(f"{prefix_uri}/checkpoints") if relative.endswith("/state.json")}
    return sorted((n for n in names if n.startswith(PREFIX)), key=lambda n: int(n[len(PREFIX):]))


def download_latest_checkpoint(prefix_uri: str, run: Path) -> int | None:
    """The newest complete checkpoint on S3 into ``run``'s checkpoint folder; its step, or None if S3 has none."""
    found: list[str] = []
    retried(f"list the checkpoints under {prefix_uri}/checkpoints", lambda: found.extend(remote_checkpoints(prefix_uri)))
    if not found:
        return None
    name = found[-1]
    checkpoint_dir(run).mkdir(parents=True, exist_ok=True)
    retried(f"download checkpoint {name} from {prefix_uri}/checkpoints",
            lambda: download_folder(f"{prefix_uri}/checkpoints/{name}", checkpoint_dir(run) / name))
    return int(name[len(PREFIX):])


class CheckpointUploader:
    """Uploads each checkpoint of a run folder once, in order, in a background thread.

    :meth:`offer` (after every step) queues the checkpoints not yet sent and raises the error
    of an upload that failed every try; :meth:`finish` waits until all are up. A checkpoint the
    training loop deleted before its upload (a newer one replaced it) is skipped. Checkpoints
    gone locally are deleted on S3 as well, so S3 keeps what the run folder keeps.
    """

    def __init__(self, run: Path, prefix_uri: str):
        self.run, self.prefix_uri = run, prefix_uri
        self.uploaded: dict[str, str] = {}
        """Checkpoint name -> its S3 URI, for those fully uploaded."""
        self._offered: set[str] = set()
        self._queue: queue.Queue[Path] = queue.Queue()
        self._error: ArtifactError | None = None
        self._thread = threading.Thread(target=self._work, name="checkpoint-upload", daemon=True)
        self._thread.start()

    def offer(self) -> None:
        self._raise()
        for checkpoint in list_checkpoints(self.run):
            if checkpoint.name not in self._offered:
                self._offered.add(checkpoint.name)
                self._queue.put(checkpoint)

    def already_uploaded(self, checkpoint: Path) -> None:
        """``checkpoint`` came from S3: nothing to send."""
        self._offered.add(checkpoint.name)
        self.uploaded[checkpoint.name] = checkpoint_uri(self.prefix_uri, checkpoint)

    def finish(self) -> None:
        self.offer()
        self._queue.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            checkpoint = self._queue.get()
            try:
                if self._error is None:
                    self._upload(checkpoint)
            except ArtifactError as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def _upload(self, checkpoint: Path) -> None:
        target = checkpoint_uri(self.prefix_uri, checkpoint)

        def send() -> None:
            if checkpoint.is_dir():
                upload_folder(checkpoint, target, last="state.json")

        try:
            retried(f"upload checkpoint {checkpoint.name} to {target}", send)
        except ArtifactError:
            if checkpoint.exists():
                raise
        if not checkpoint.exists():  # replaced by a newer checkpoint while it uploaded: drop what went up
            with contextlib.suppress(Exception):
                delete_prefix(target)
            return
        self.uploaded[checkpoint.name] = target
        log.info("checkpoint %s uploaded to %s", checkpoint.name, target)
        kept = {p.name for p in list_checkpoints(self.run)} | {checkpoint.name}
        try:
            for name in remote_checkpoints(self.prefix_uri):
                if name not in kept:
                    self.uploaded.pop(name, None)
                    delete_prefix(f"{self.prefix_uri}/checkpoints/{name}")
        except Exception as exc:  # an old checkpoint left on S3 costs space, not correctness
            log.warning("could not delete old checkpoints under %s/checkpoints: %s", self.prefix_uri, exc)


def upload_result(run: Path, prefix_uri: str) -> str:
    """The trained model (manifest.json, model/, adapter/) to the job's prefix; returns where it is."""
    def send() -> None:
        client, (bucket, prefix) = uris.s3_client(), uris.split_s3(prefix_uri)
        for part in RESULT_PARTS[1:]:
            if (run / part).is_dir():
                upload_folder(run / part, f"{prefix_uri}/{part}")
        client.upload_file(str(run / "manifest.json"), bucket, f"{prefix}/manifest.json")  # last: the model is whole once it is there

    retried(f"upload the trained model to {prefix_uri}", send)
    return prefix_uri
