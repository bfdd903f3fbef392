"""Custom Model Import: a result folder of ``tunesmith train`` (or of the quickstart) registered as
a custom model, as Bedrock's CreateModelImportJob registers weights from S3.

The model is a :class:`~tunesmith.jobs.store.CustomModel` of type IMPORTED, Active at once, that
the runtime API (Converse, InvokeModel), ``/v1/chat/completions`` and the console serve like a
trained one; its ARN is an ``imported-model`` ARN, which GetModelImportJob names.

- A local folder (a path or ``file://`` URI, read by :func:`~tunesmith.jobs.uris.locate`: inside
  the server's allowed folders, control characters refused) is the result itself or a folder
  holding exactly one. What serving needs (``manifest.json`` and ``model/``) is copied into
  ``HOME/imports/MODEL_ID/``: the model stays as imported whatever later happens to the folder,
  and DeleteCustomModel deletes only the copy. Every file copied must lie inside the allowed
  folders too, symlinks resolved.
- An ``s3://`` prefix must hold ``manifest.json`` and ``model/``; it is not copied: the runtime
  downloads it on first use, as it does a model trained on another host.

The import finishes before CreateModelImportJob answers (GetModelImportJob says Completed), or
is refused with a ValidationException saying why; nothing is left behind then.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tunesmith.errors import TunesmithError
from tunesmith.export.run_folder import RunFolder
from tunesmith.files import staged_folder
from tunesmith.jobs import arns, artifacts, uris
from tunesmith.jobs.errors import ConflictException, ValidationException
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.store import CustomModel, Job, JobStore, ModelImport, new_id, utcnow
from tunesmith.kinds import CustomizationKind
from tunesmith.models.registry import result_inside
from tunesmith.statuses import ACTIVE_JOB_STATUSES, ImportJobStatus, ModelStatus
from tunesmith.tiers import UnknownModelError, resolve_tier

log = logging.getLogger("tunesmith.service.jobs")
FIELD = "modelDataSource.s3DataSource.s3Uri"
SERVED = ("manifest.json", "model")
"""What of a result folder serving loads (:func:`~tunesmith.models.registry.resolve_model`)."""


@dataclass(frozen=True)
class ImportRequest:
    """CreateModelImportJob, parsed at the edge."""

    job_name: str
    model_name: str
    role_arn: str
    source_uri: str
    client_token: str | None = None


def import_model(store: JobStore, session: Session, settings: ServiceSettings, request: ImportRequest) -> ModelImport:
    """The completed import job, its model registered; or the one an earlier request with the same
    ``clientRequestToken`` made. ConflictException when the job name, the token or the model name
    is taken; ValidationException when the location holds no result this server can serve."""
    earlier = _conflict(store, session, request)
    if earlier is not None:
        return earlier
    location = _locate(request.source_uri, settings.allowed_roots)
    model_id, job_id = new_id(), new_id()
    folder = settings.home / "imports" / model_id
    if location.is_s3:
        manifest, source, details = _s3_manifest(location.uri), location.uri, {"modelUri": location.uri}
    else:
        run = _local_result(location.path, settings.allowed_roots)
        manifest, source, details = run.manifest, str(run.path), {}
        with staged_folder(folder) as staging:
            shutil.copy2(run.path / "manifest.json", staging / "manifest.json")
            shutil.copytree(run.path / "model", staging / "model")
    now = utcnow()
    job = ModelImport(
        id=job_id, arn=arns.import_job_arn(job_id), name=request.job_name, client_token=request.client_token,
        model_name=request.model_name, model_arn=arns.imported_model_arn(model_id), role_arn=request.role_arn,
        source_uri=request.source_uri, status=ImportJobStatus.COMPLETED, created=now, modified=now, ended=now,
    )
    model = CustomModel(
        id=model_id, arn=job.model_arn, name=request.model_name, job_arn=job.arn, job_name=job.name,
        base_model_arn=_base_model_arn(manifest), customization_type=CustomizationKind.IMPORTED, status=ModelStatus.ACTIVE,
        folder=str(folder), details={"importedFrom": source, "result": manifest.get("result"), **details}, created=now,
    )
    session.add_all([job, model])
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create won a unique constraint: say which, as the checks would have
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        earlier = _conflict(store, session, request)
        if earlier is not None:
            return earlier
        raise ConflictException("The provided job name is currently in use.") from exc
    log.info("import %s: %s registered as model %s", job.name, source, model.arn)
    return job


def _locate(uri: str, roots: list[str]) -> uris.Location:
    try:
        return uris.locate(uri, roots)
    except uris.UriError as exc:
        raise ValidationException(f"{FIELD}: {exc}") from None


def _local_result(path: Path, roots: list[str]) -> RunFolder:
    """The result at ``path`` (or the one it holds), with ``model/``, every file of it inside ``roots``."""
    if not path.is_dir():
        raise ValidationException(f"{FIELD}: {path} is not a folder; give a result folder of `tunesmith train`")
    try:
        found = result_inside(path)
        if found is not None:
            path = _locate(str(found), roots).path  # a symlinked result folder must lead inside the roots too
        run = RunFolder.open(path)
    except TunesmithError as exc:
        raise ValidationException(f"{FIELD}: {exc}") from None
    if not run.has_merged_model:
        raise ValidationException(f"{FIELD}: {run.path} holds adapter/ but no merged model/ (a QLoRA run keeps only "
                                  "its adapter); serving needs model/")
    for item in [run.path / "manifest.json", *(p for p in (run.path / "model").rglob("*") if p.is_file())]:
        _locate(str(item), roots)
    return run


def _s3_manifest(uri: str) -> dict[str, Any]:
    """The manifest of the result stored under ``uri``, once its served parts are seen there."""
    try:
        stored = {relative.split("/", 1)[0] for relative, _ in artifacts.objects(uri)}
        if not set(SERVED) <= stored:
            raise ValidationException(f"{FIELD}: {uri} holds no result ({' and '.join(SERVED)} are needed; found: "
                                      f"{', '.join(sorted(stored)) or 'nothing'})")
        bucket, prefix = uris.split_s3(uri)
        body = uris.s3_client().get_object(Bucket=bucket, Key=f"{prefix}/manifest.json" if prefix else "manifest.json")["Body"].read()
        manifest = json.loads(body)
    except ValidationException:
        raise
    except Exception as exc:  # S3 unreachable, access denied, a manifest that is not JSON
        raise ValidationException(f"{FIELD}: cannot read the result under {uri}: {exc}") from exc
    if not isinstance(manifest, dict) or "method" not in manifest:
        raise ValidationException(f"{FIELD}: {uri}/manifest.json is not a tunesmith manifest")
    return manifest


def _base_model_arn(manifest: dict[str, Any]) -> str:
    """The foundation model the result was trained from: its tier's hosted id, else the base's name."""
    try:
        return arns.foundation_model_arn(resolve_tier(str(manifest.get("tier", ""))).hosted_ids[0])
    except (UnknownModelError, IndexError):
        return arns.foundation_model_arn(str(manifest.get("baseModelId") or manifest.get("model") or "unknown"))


def _conflict(store: JobStore, session: Session, request: ImportRequest) -> ModelImport | None:
    """The import an idempotent retry (same ``clientRequestToken``) already made, or None;
    ConflictException when the name, the token or the model name is taken."""
    if request.client_token:
        earlier = session.scalar(select(ModelImport).where(ModelImport.client_token == request.client_token))
        if earlier is not None and earlier.name != request.job_name:
            raise ConflictException("clientRequestToken was already used for a different import job")
        if earlier is not None:
            return earlier
    if store.model_import(session, request.job_name) is not None:
        raise ConflictException("The provided job name is currently in use.")
    training = select(Job.id).where(Job.output_model_name == request.model_name, Job.status.in_(ACTIVE_JOB_STATUSES))
    if store.model(session, request.model_name) is not None or session.scalar(training) is not None:
        raise ConflictException(f"The provided model name {request.model_name} is currently in use.")
    return None
