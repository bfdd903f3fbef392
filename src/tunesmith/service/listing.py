"""Helpers the routes share: the JSON body, timestamps in query strings, sorting and pages."""

from __future__ import annotations

import base64
import datetime as dt
import json

from fastapi import Request
from fastapi.responses import JSONResponse

from tunesmith.service.errors import ValidationException


async def json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise ValidationException(f"the request body is not valid JSON: {exc.msg}") from exc
    if not isinstance(body, dict):
        raise ValidationException("the request body must be a JSON object")
    return body


def parse_time(value: str | None, key: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
        except ValueError as exc:
            raise ValidationException(f"{key} '{value}' is not a timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def page(request: Request, rows: list, render) -> tuple[list, str | None]:
    params = request.query_params
    try:
        limit = int(params.get("maxResults", 100))
    except ValueError as exc:
        raise ValidationException("maxResults must be an integer") from exc
    if not 1 <= limit <= 1000:
        raise ValidationException(f"maxResults {limit} is out of range: must be between 1 and 1000")
    token = params.get("nextToken")
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationException("nextToken is not a token this server issued") from exc
    page = rows[offset : offset + limit]
    following = offset + limit
    next_token = base64.urlsafe_b64encode(str(following).encode()).decode() if following < len(rows) else None
    return [render(r) for r in page], next_token


def sort(request: Request, rows: list, names: dict[str, str]) -> list:
    params = request.query_params
    sort_by = params.get("sortBy", "CreationTime")
    if sort_by not in names:
        raise ValidationException(f"sortBy '{sort_by}' is not one of {', '.join(names)}")
    order = params.get("sortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise ValidationException(f"sortOrder '{order}' is not Ascending or Descending")
    return sorted(rows, key=lambda r: (getattr(r, names[sort_by]), r.id), reverse=order == "Descending")


def list_response(request: Request, rows: list, render, key: str) -> JSONResponse:
    """A List* answer: rows sorted by creation time, one page of them under ``key``, and a
    ``nextToken`` when more remain."""
    rows = sort(request, rows, {"CreationTime": "created"})
    summaries, token = page(request, rows, render)
    return JSONResponse({key: summaries, **({"nextToken": token} if token else {})})
