"""The console's login: an access key and its secret (``--credentials KEY:SECRET``) buy a
signed session cookie.

The cookie is ``KEY.ISSUED.SIGNATURE``, the signature an HMAC-SHA256 of ``KEY.ISSUED`` under
that key's secret, so it proves the secret was known without holding it, stops working
when the credentials change, and expires after :data:`MAX_AGE`. It is ``HttpOnly`` and
``SameSite=Strict`` (a page on another site cannot make the browser send it, which is what
keeps the console's forms safe from cross-site posts). Without credentials the server is
open, as the API is, and the console needs no login.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tunesmith.console.html import ConsoleRoute, LoginRequired, read_form, render

COOKIE = "tunesmith_console"
MAX_AGE = 12 * 3600
"""Seconds a login lasts."""

router = APIRouter(route_class=ConsoleRoute)


def _signature(key: str, issued: int, secret: str) -> str:
    return hmac.new(secret.encode(), f"{key}.{issued}".encode(), hashlib.sha256).hexdigest()


def session_value(key: str, secret: str, issued: int | None = None) -> str:
    issued = int(time.time()) if issued is None else issued
    return f"{key}.{issued}.{_signature(key, issued, secret)}"


def signed_in_key(value: str | None, credentials: dict[str, str], now: float | None = None) -> str | None:
    """The access key a cookie value proves, or None (missing, forged, expired, unknown key)."""
    if not value or value.count(".") < 2:
        return None
    key, issued_text, signature = value.rsplit(".", 2)
    secret = credentials.get(key)
    if secret is None or not issued_text.isdigit():
        return None
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not 0 <= age <= MAX_AGE:
        return None
    return key if hmac.compare_digest(signature, _signature(key, issued, secret)) else None


def require_login(request: Request) -> str | None:
    """The signed-in access key; raises LoginRequired when the server has credentials and
    the request carries no valid session. None when the server has no credentials."""
    credentials = request.app.state.settings.credentials
    if not credentials:
        return None
    key = signed_in_key(request.cookies.get(COOKIE), credentials)
    if key is None:
        raise LoginRequired()
    request.state.console_user = key
    return key


LoginDep = Annotated[str | None, Depends(require_login)]


def _next_page(value: str | None) -> str:
    """Where to go after logging in: a console page only (no open redirect)."""
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    if not request.app.state.settings.credentials:
        return Response(status_code=303, headers={"Location": "/console"})
    return render(request, "login.html", next=_next_page(next), problem=None)


@router.post("/login")
async def login(request: Request) -> Response:
    credentials = request.app.state.settings.credentials
    form = await read_form(request)
    target = _next_page(form.get("next"))
    if not credentials:
        return Response(status_code=303, headers={"Location": target})
    key, secret = form.get("access_key", "").strip(), form.get("secret", "")
    expected = credentials.get(key)
    if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
        return render(request, "login.html", status_code=401, next=target, problem="The access key or the secret is wrong.")
    response = Response(status_code=303, headers={"Location": target})
    response.set_cookie(COOKIE, session_value(key, expected), max_age=MAX_AGE, path="/console", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout() -> Response:
    response = Response(status_code=303, headers={"Location": "/console/login"})
    response.delete_cookie(COOKIE, path="/console")
    return response
