"""What every console page shares: the templates, the form reader, and HTML error pages.

Console routes use :class:`ConsoleRoute`, so that whatever goes wrong in them (a job that
does not exist, a bad form, a missing login, a bug) answers with a page a person can read,
never the API's JSON errors or a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from tunesmith.api.errors import describe
from tunesmith.jobs.errors import ServiceError, ValidationException
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import JobStatus, ModelStatus

log = logging.getLogger("tunesmith.console")
HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM_FIELDS = 100


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``12 s``; empty for None."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = _when
templates.env.filters["duration"] = duration
templates.env.globals.update(JobStatus=JobStatus, ModelStatus=ModelStatus, CustomizationKind=CustomizationKind)  # templates compare with these, never a spelling


class LoginRequired(Exception):
    """Raised by the login dependency; answered with a redirect to the login page (or 401)."""


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def login_response(request: Request) -> Response:
    """Pages redirect to the login form (303); fragments, posts and streams get 401."""
    target = "/console/login"
    if request.method == "GET" and not is_htmx(request):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Response(status_code=303, headers={"Location": f"{target}?next={quote(path, safe='')}"})
    return Response("Log in first: /console/login", status_code=401, media_type="text/plain", headers={"HX-Redirect": target})


def render(request: Request, template: str, status_code: int = 200, **context) -> Response:
    context.setdefault("signed_in", getattr(request.state, "console_user", None))
    context.setdefault("credentials_required", bool(request.app.state.settings.credentials))
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def redirect(location: str) -> Response:
    """303 See Other: after a form's post, the browser gets the page (a reload does not post again)."""
    return Response(status_code=303, headers={"Location": location})


def error_page(request: Request, status: int, message: str) -> Response:
    if is_htmx(request):  # a fragment: swapped in where the content would have gone
        return templates.TemplateResponse(request, "_error.html", {"message": message}, status_code=status)
    return render(request, "error.html", status_code=status, status=status, message=message)


class ConsoleRoute(APIRoute):
    """An APIRoute whose failures are HTML pages: login redirects, 4xx with the service's
    own message, and a plain 500 page (details in the server log) for bugs."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_response(request)
            except ServiceError as error:
                return error_page(request, error.status if error.status < 500 else 400, error.message)
            except RequestValidationError as error:
                return error_page(request, 400, "; ".join(describe(e) for e in error.errors()[:5]))
            except Exception:
                log.exception("console error in %s %s", request.method, request.url.path)
                return error_page(request, 500, "Something went wrong on the server; its log has the details.")

        return guarded


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated
    name wins). Read here rather than with FastAPI's ``Form`` to need no multipart parser."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except ValueError as exc:  # more fields than any console form has
        raise ValidationException(f"the form has more than {MAX_FORM_FIELDS} fields") from exc
