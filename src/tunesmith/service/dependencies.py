"""Typed dependencies of the routes: the settings, the store, a database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tunesmith.service.settings import ServiceSettings
from tunesmith.service.store import JobStore


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
