"""The console's router: the login pages open to all, every other page behind the login
dependency, a 404 page for any other /console path (also behind the login), and the site's
icon at ``/favicon.ico`` (open, as browsers ask for it without the console's cookie path)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, Response

from tunesmith.console import create, jobs, login, models, playground
from tunesmith.console.html import STATIC, ConsoleRoute

PREFIX = "/console"
SECTIONS = (create, jobs, models, playground)
"""The modules whose pages need the login."""

fallback = APIRouter(route_class=ConsoleRoute)


@fallback.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def not_found(request: Request, rest: str) -> Response:
    return jobs.not_found(request)


def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})


router = APIRouter()
router.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
router.include_router(login.router, prefix=PREFIX, include_in_schema=False)  # pages, not API: not in /openapi.json
for section in (*(module.router for module in SECTIONS), fallback):  # the fallback last: it matches every path
    router.include_router(section, prefix=PREFIX, dependencies=[Depends(login.require_login)], include_in_schema=False)
