"""The access log and request timing: one line per request (logging itself is set up by
:func:`tunesmith.jobs.logs.configure_logging`). An access line reads::

    2026-05-01 12:00:00,123 INFO tunesmith.access: GET /model-customization-jobs 200 3.1ms 127.0.0.1:53412

It names the path without its query string (a presigned URL's signature lives there),
and never a header or a body: credentials, bearer tokens and request data stay out of logs.

:class:`RequestObserver` times each request once and hands a :class:`RequestRecord` to its
listeners: the access log here, the latency histogram in :mod:`tunesmith.api.metrics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
"""The route label of a request no route answered (an unknown path, a static file)."""

access_log = logging.getLogger("tunesmith.access")


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, as the listeners see it."""

    method: str
    path: str
    """The URL path as sent, without the query string."""
    route: str
    """The route template (``/model-customization-jobs/{identifier}``), or :data:`UNMATCHED`."""
    status: int
    seconds: float
    client: str
    """``host:port`` of the peer, or ``-`` when the server does not know it."""


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (FastAPI notes it in the scope), so
    labels stay few whatever paths clients send."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


QUIET_PATHS = ("/health",)
"""Probes polled every few seconds: logged at debug, so info stays readable."""


def log_access(record: RequestRecord) -> None:
    level = logging.DEBUG if record.path in QUIET_PATHS else logging.INFO
    access_log.log(level, "%s %s %d %.1fms %s", record.method, record.path, record.status, record.seconds * 1000, record.client)


class RequestObserver:
    """A pure ASGI middleware (streamed responses pass through untouched) that times every
    HTTP request to its last byte and tells each listener how it went. A request that
    raised counts as status 500, as the error handler will answer it."""

    def __init__(self, app: ASGIApp, listeners: Sequence[Callable[[RequestRecord], None]] = (log_access,)):
        self.app, self.listeners = app, tuple(listeners)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def noted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            client = scope.get("client")
            record = RequestRecord(
                method=scope.get("method", "-"), path=scope.get("path", ""), route=route_template(scope), status=status,
                seconds=time.perf_counter() - started, client=f"{client[0]}:{client[1]}" if client else "-",
            )
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:  # an observer must never fail the request it observes
                    logging.getLogger("tunesmith.service").exception("request listener %r failed", listener)
