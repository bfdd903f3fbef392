"""The List* routes' shared half: query parameters, filtering, sorting and pages in SQL.

Pages use keyset tokens: ``nextToken`` names the last row sent (creation time and id), and
the next page starts after it, so a job created meanwhile never shifts or repeats a page.
Rows are loaded without their large columns (a job's spec), only what a summary shows.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from tunesmith.api.protocol import PRINTABLE, SortBy, SortOrder
from tunesmith.jobs.errors import ValidationException

Filter = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=PRINTABLE)]


class ListQuery(BaseModel):
    """The query parameters every List* operation takes."""

    model_config = ConfigDict(extra="forbid")

    maxResults: Annotated[int, Field(ge=1, le=1000)] = 100
    nextToken: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^\S*$")] | None = None
    sortBy: SortBy = "CreationTime"
    sortOrder: SortOrder = "Descending"


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A query timestamp in UTC (a naive one is taken as UTC), as the store keeps them.
    A time that has no UTC equivalent (year 1 at +01:00) is a ValueError."""
    if value is None:
        return None
    try:
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except OverflowError as exc:
        raise ValueError("is out of range once converted to UTC") from exc


Timestamp = Annotated[dt.datetime, AfterValidator(utc)]
"""A query timestamp, checked and converted to UTC by pydantic (so a bad one names its field)."""


def created_between(column, after: dt.datetime | None, before: dt.datetime | None) -> list:
    conditions = []
    if after is not None:
        conditions.append(column > utc(after))
    if before is not None:
        conditions.append(column < utc(before))
    return conditions


def _token(row: Any) -> str:
    created = utc(row.created).isoformat()
    return base64.urlsafe_b64encode(json.dumps([created, row.id]).encode()).decode()


def _after_token(token: str) -> tuple[dt.datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return utc(dt.datetime.fromisoformat(created)), str(row_id)
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError, RecursionError) as exc:
        raise ValidationException("nextToken is not a token this server issued") from exc


def list_page(session: Session, statement: Select, table: type, query: ListQuery, render: Callable[[Any], dict], key: str) -> dict:
    """One page of ``statement``'s rows (already filtered), sorted by creation time then id."""
    descending = query.sortOrder == "Descending"
    if query.nextToken:
        created, row_id = _after_token(query.nextToken)
        if descending:
            statement = statement.where(or_(table.created < created, and_(table.created == created, table.id < row_id)))
        else:
            statement = statement.where(or_(table.created > created, and_(table.created == created, table.id > row_id)))
    order = (table.created.desc(), table.id.desc()) if descending else (table.created.asc(), table.id.asc())
    rows = list(session.scalars(statement.order_by(*order).limit(query.maxResults + 1)).all())
    page = rows[: query.maxResults]
    answer: dict[str, Any] = {key: [render(r) for r in page]}
    if len(rows) > query.maxResults:
        answer["nextToken"] = _token(page[-1])
    return answer
