"""Routes of Custom Model Import: CreateModelImportJob, GetModelImportJob, ListModelImportJobs.

The import itself is the job service's (:mod:`tunesmith.jobs.imports`); the imported model is
then a custom model like any other (GetCustomModel, Converse, ``/v1/chat/completions``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from tunesmith.api import wire
from tunesmith.api.dependencies import IdentifierPath, SessionDep, SettingsDep, StoreDep
from tunesmith.api.listing import Filter, ListQuery, Timestamp, created_between, list_page
from tunesmith.api.protocol import CreateImportJobRequest, ImportJobDetail, ImportJobList, JobArn
from tunesmith.jobs import imports
from tunesmith.jobs.errors import ResourceNotFoundException
from tunesmith.jobs.store import ModelImport
from tunesmith.statuses import ImportJobStatus

router = APIRouter()


@router.post("/model-import-jobs", status_code=201, response_model=JobArn)
def create_import_job(body: CreateImportJobRequest, settings: SettingsDep, store: StoreDep, session: SessionDep) -> dict:
    request = imports.ImportRequest(job_name=body.jobName, model_name=body.importedModelName, role_arn=body.roleArn,
                                    source_uri=body.modelDataSource.s3DataSource.s3Uri, client_token=body.clientRequestToken)
    return {"jobArn": imports.import_model(store, session, settings, request).arn}


class ListImportJobsQuery(ListQuery):
    creationTimeAfter: Timestamp | None = None
    creationTimeBefore: Timestamp | None = None
    statusEquals: ImportJobStatus | None = None
    nameContains: Filter | None = None


@router.get("/model-import-jobs", response_model=ImportJobList, response_model_exclude_none=True)
def list_import_jobs(query: Annotated[ListImportJobsQuery, Query()], session: SessionDep) -> dict:
    conditions = created_between(ModelImport.created, query.creationTimeAfter, query.creationTimeBefore)
    if query.statusEquals:
        conditions.append(ModelImport.status == query.statusEquals)
    if query.nameContains:
        conditions.append(ModelImport.name.contains(query.nameContains, autoescape=True))
    statement = select(ModelImport).where(*conditions)
    return list_page(session, statement, ModelImport, query, wire.import_job_summary, "modelImportJobSummaries")


@router.get("/model-import-jobs/{identifier:path}", response_model=ImportJobDetail, response_model_exclude_none=True)
def get_import_job(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    job = store.model_import(session, identifier)
    if job is None:
        raise ResourceNotFoundException(f"Could not find import job with identifier {identifier}")
    return wire.import_job_detail(job)
