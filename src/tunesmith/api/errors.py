"""The hosted service's error shapes: HTTP status, ``x-amzn-ErrorType`` and ``{"message"}``.

botocore turns these into ``client.exceptions.<Name>``. Every error the server sends has
this shape, including the ones FastAPI and Starlette raise themselves (unknown routes, wrong
methods, bodies that do not parse or do not fit the request model, bodies over the size
limit): :func:`install_handlers` maps them all. Under ``/v1/`` (the OpenAI-compatible API,
``openai_routes.py``) the body takes OpenAI's shape instead, ``{"error": {"message", "type",
"param", "code"}}``, which the ``openai`` SDKs turn into ``openai.NotFoundError`` and friends.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.api.protocol import PATTERN_MEANINGS
from tunesmith.jobs.errors import (
    RequestTooLargeException,
    ServiceError,
    UnknownOperationException,
    ValidationException,
)

log = logging.getLogger("tunesmith.service")
OPENAI_PREFIX = "/v1/"
"""Paths whose errors take OpenAI's shape."""


def error_response(error: ServiceError) -> Response:
    return JSONResponse({"message": error.message}, status_code=error.status, headers={"x-amzn-ErrorType": error.name})


def openai_error_response(error: ServiceError) -> Response:
    """OpenAI's error body (``x-amzn-ErrorType`` stays: every error of this server carries it)."""
    kind = "server_error" if error.status >= 500 else "invalid_request_error"
    body = {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}}
    return JSONResponse(body, status_code=error.status, headers={"x-amzn-ErrorType": error.name})


def error_response_for(path: str, error: ServiceError) -> Response:
    """The error in the shape the route's clients read: OpenAI's under ``/v1/``, else Bedrock's."""
    return openai_error_response(error) if path.startswith(OPENAI_PREFIX) else error_response(error)


def _field(location: tuple[Any, ...]) -> str:
    """``("body", "validationDataConfig", "validators", 0, "s3Uri")`` -> ``validationDataConfig.validators[0].s3Uri``."""
    parts = [p for p in location if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "the request body"


def _shown(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit] + "..."


_TYPE_NAMES = {
    "model_type": "a JSON object", "model_attributes_type": "a JSON object", "dict_type": "a JSON object",
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number",
    "bool_type": "true or false", "list_type": "a list", "datetime_type": "a timestamp",
}


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "true/false"), (int, "an integer"), (float, "a number"), (str, "a string"),
                       (list, "a list"), (dict, "an object"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return "something else"


def describe(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence that names the field, e.g.
    ``jobName 'a b' does not match the pattern ^[a-zA-Z0-9][a-zA-Z0-9+.-]*$``."""
    where, kind, ctx = _field(tuple(error.get("loc", ()))), error.get("type", ""), error.get("ctx") or {}
    value = error.get("input")
    if kind in _TYPE_NAMES:
        return f"{where} must be {_TYPE_NAMES[kind]}, not {_json_type(value)}"
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"{where} is not a field of this request"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") in PATTERN_MEANINGS:
            return f"{where} '{_shown(value)}' {PATTERN_MEANINGS[ctx['pattern']]}"
        return f"{where} '{_shown(value)}' does not match the pattern {ctx.get('pattern')}"
    if kind == "string_too_long":
        return f"{where} '{_shown(value)}' is {len(value)} characters long; the maximum is {ctx.get('max_length')}"
    if kind == "string_too_short":
        return f"{where} must be at least {ctx.get('min_length')} character(s) long"
    if kind == "too_long":
        return f"{where} has {ctx.get('actual_length')} entries; at most {ctx.get('max_length')} are allowed"
    if kind == "too_short":
        return f"{where} has {ctx.get('actual_length')} entries; at least {ctx.get('min_length')} are required"
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        bound = {"less_than_equal": "at most", "greater_than_equal": "at least", "less_than": "below", "greater_than": "above"}[kind]
        limit = next(iter(ctx.values()), "")
        return f"{where} {_shown(value)} is out of range: must be {bound} {limit}"
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {ctx.get('error', 'cannot parse it')}"
    if kind == "literal_error" or kind == "enum":
        return f"{where} '{_shown(value)}' is not one of {ctx.get('expected')}"
    message = str(error.get("msg", "is not valid"))
    return f"{where}: {message[0].lower() + message[1:] if message else message}"


def install_handlers(app: FastAPI) -> None:
    """Every error leaves with ``x-amzn-ErrorType``, in Bedrock's shape (OpenAI's under ``/v1/``)."""

    def respond(request: Request, error: ServiceError) -> Response:
        return error_response_for(request.url.path, error)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError) -> Response:
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
        errors = error.errors()
        problems = [describe(e) for e in errors]
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        field = _field(tuple(errors[0].get("loc", ()))) if errors else ""
        return respond(request, ValidationException(shown, param=None if field == "the request body" else field))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return respond(request, UnknownOperationException(f"no operation at {request.method} {_shown(request.url.path, 200)}"))
        if error.status_code == 405:
            failure = UnknownOperationException(f"{request.method} is not supported at {_shown(request.url.path, 200)}")
            failure.status = 405
            return respond(request, failure)
        if error.status_code == 413:
            return respond(request, RequestTooLargeException(f"the request body is {error.detail}"))
        failure = ValidationException(f"the request could not be read: {error.detail}")
        failure.status = error.status_code if 400 <= error.status_code < 500 else 400
        return respond(request, failure)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return respond(request, ServiceError(f"internal error ({type(error).__name__}); the server log has the details"))
