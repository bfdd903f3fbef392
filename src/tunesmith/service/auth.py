"""Optional SigV4 verification: the server recomputes each request's signature with botocore's
own signer and the configured secret, and refuses what does not match.

Turn it on (``tunesmith serve --credentials ACCESS_KEY:SECRET``, repeatable, or
``TUNESMITH_CREDENTIALS``) whenever the server listens beyond loopback or the machine is
shared: without it anyone who can reach the port can start jobs and read models. Clients
need nothing new: boto3 signs every request with the credentials it is given.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

from tunesmith.service.errors import AccessDeniedException

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = dt.timedelta(minutes=15)


def parse_credentials(items: list[str]) -> dict[str, str]:
    """``["AKID:SECRET", ...]`` as a dict; a malformed item is a ValueError naming it."""
    out = {}
    for item in items:
        key, sep, secret = item.partition(":")
        if not sep or not key or not secret:
            raise ValueError(f"credentials '{item[:8]}...' are not ACCESS_KEY:SECRET")
        out[key] = secret
    return out


def expected_signature(request_method: str, url: str, headers: dict[str, str], body: bytes, secret: str, key: str,
                       region: str, service: str, amz_date: str) -> str:
    aws_request = AWSRequest(method=request_method, url=url, headers=headers, data=body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret), service, region)
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


async def verify(request: Request, credentials: dict[str, str]) -> None:
    header = request.headers.get("authorization", "")
    match = _AUTHORIZATION.fullmatch(header.strip())
    if not match:
        raise AccessDeniedException("the request is not signed with AWS Signature Version 4")
    secret = credentials.get(match["key"])
    if secret is None:
        raise AccessDeniedException(f"the access key {match['key']} is not known to this server")
    amz_date = request.headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise AccessDeniedException("the X-Amz-Date header is missing or malformed") from exc
    if abs(dt.datetime.now(dt.timezone.utc) - when) > MAX_SKEW:
        raise AccessDeniedException("the request signature has expired (clock skew over 15 minutes)")
    signed = match["headers"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"").decode()
    url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path.decode()}" + (f"?{query}" if query else "")
    body = await request.body()
    expected = expected_signature(request.method, url, headers, body, secret, match["key"], match["region"], match["service"], amz_date)
    if not hmac.compare_digest(expected, match["signature"]):
        raise AccessDeniedException("The request signature we calculated does not match the signature you provided.")


class SigV4Middleware(BaseHTTPMiddleware):
    def __init__(self, app, credentials: dict[str, str]):
        super().__init__(app)
        self.credentials = credentials

    async def dispatch(self, request: Request, call_next):
        if request.url.path != "/health":
            try:
                await verify(request, self.credentials)
            except AccessDeniedException as error:
                from tunesmith.service.app import error_response

                return error_response(error)
        return await call_next(request)
