"""Typed dependencies of the routes: the settings, the store, a database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from tunesmith.api.protocol import PRINTABLE
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.store import JobStore


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.settings


def store_of(request: Request) -> JobStore:
    return request.app.state.store


def session_for(store: Annotated[JobStore, Depends(store_of)]) -> Iterator[Session]:
    """One session per request, closed when the response is done."""
    with store.session() as session:
        yield session


SettingsDep = Annotated[ServiceSettings, Depends(settings_of)]
StoreDep = Annotated[JobStore, Depends(store_of)]
SessionDep = Annotated[Session, Depends(session_for)]
IdentifierPath = Annotated[str, Path(min_length=1, max_length=2048, pattern=PRINTABLE, description="A name or an ARN.")]
"""A job, model or deployment named in the URL."""
