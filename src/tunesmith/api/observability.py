"""The access log and request timing: one line per request (logging itself is set up by
:func:`tunesmith.jobs.logs.configure_logging`). An access line reads::

    2026-05-01 12:00:00,123 INFO tunesmith.access: GET /model-customization-jobs 200 3.1ms 127.0.0.1:53412

It names the path without its query string (a presigned URL's signature lives there),
and never a header or a body: credentials, bearer tokens and request data stay out of logs.

:class:`RequestObserver` times each request once and hands a :class:`RequestRecord` to its
listeners: the access log here, the latency histogram in :mod:`tunesmith.api.metrics`.

A record names its route by the full template (``/console/jobs/{name}``,
``/console/static/{path}``), found by matching the request against the app's routes as the
router does. The scope's own ``route`` is not enough: FastAPI 0.137+ keeps a router that
``include_router(prefix=...)`` adds as one node and puts the route there without that prefix
(``/jobs/{name}``), and a mounted app (the static files) sets no route at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.routing import Match

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
"""The route label of a request no route answers (an unknown path)."""

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


RouteMatcher = tuple[Callable[..., tuple[Match, Any]], str]
"""A route's ``matches`` (scope -> match, child scope) and its full path template."""


def route_matchers(routes: Sequence[Any]) -> list[RouteMatcher]:
    """Each of ``routes``, an included router opened up into its own routes, with its full path
    template: FastAPI's :func:`~fastapi.routing.iter_route_contexts` (0.137.2+) gives both; an
    older FastAPI copied included routes with their prefix, so its list is flat already."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        flat = list(routes)
    else:
        flat = list(iter_route_contexts(routes))
    return [(route.matches, getattr(route, "path_format", None) or UNMATCHED) for route in flat]


def route_template(matchers: Sequence[RouteMatcher], scope: Scope) -> str:
    """The path template of the route that answers ``scope``: the first full match, else the
    first partial one (the path with another method), as the router chooses. Templates keep
    labels few whatever paths clients send."""
    partial = UNMATCHED
    for matches, template in matchers:
        match, _ = matches(scope)
        if match == Match.FULL:
            return template
        if match == Match.PARTIAL and partial == UNMATCHED:
            partial = template
    return partial


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
        self.matchers: list[RouteMatcher] | None = None
        """The app's routes as they are at its first request (``create_app`` has added them all)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        if self.matchers is None:
            self.matchers = route_matchers(getattr(scope.get("app"), "routes", []))
        route = route_template(self.matchers, scope)  # before the app runs: a mount rewrites the scope's root_path

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
                method=scope.get("method", "-"), path=scope.get("path", ""), route=route, status=status,
                seconds=time.perf_counter() - started, client=f"{client[0]}:{client[1]}" if client else "-",
            )
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:  # an observer must never fail the request it observes
                    logging.getLogger("tunesmith.service").exception("request listener %r failed", listener)
