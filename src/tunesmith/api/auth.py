"""Optional SigV4 verification: the server recomputes each request's signature with botocore's
own signer and the configured secret, and refuses what does not match.

Turn it on (``tunesmith serve --credentials ACCESS_KEY:SECRET``, repeatable, or
``TUNESMITH_CREDENTIALS``) whenever the server listens beyond loopback or the machine is
shared: without it anyone who can reach the port can start jobs and read models. Clients
need nothing new: boto3 signs every request with the credentials it is given.

What is checked: the access key; the signature over method, path, query, the signed headers
and the SHA-256 of the body as received (a client's ``X-Amz-Content-SHA256`` must equal it;
``UNSIGNED-PAYLOAD`` is refused unless the server is started with
``--allow-unsigned-payload``); the credential scope, which must name the server's region
(``--region``, default us-east-1), the ``bedrock`` service and the day of ``X-Amz-Date``;
and a clock skew of at most 15 minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

from tunesmith.api.errors import OPENAI_PREFIX, error_response, openai_error_response
from tunesmith.jobs.errors import AccessDeniedException, AuthenticationException

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = dt.timedelta(minutes=15)
SERVICE = "bedrock"
"""The signing name of both botocore clients, ``bedrock`` and ``bedrock-runtime``."""
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


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


async def verify(request: Request, credentials: dict[str, str], region: str, allow_unsigned_payload: bool = False) -> None:
    header = request.headers.get("authorization", "")
    match = _AUTHORIZATION.fullmatch(header.strip())
    if not match:
        raise AccessDeniedException("the request is not signed with AWS Signature Version 4")
    secret = credentials.get(match["key"])
    if secret is None:
        raise AccessDeniedException(f"the access key {match['key']} is not known to this server")
    if match["service"] != SERVICE:
        raise AccessDeniedException(f"the credential scope names the service '{match['service']}'; this server is '{SERVICE}'")
    if match["region"] != region:
        raise AccessDeniedException(f"the credential scope names the region '{match['region']}'; this server is '{region}'")
    amz_date = request.headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise AccessDeniedException("the X-Amz-Date header is missing or malformed") from exc
    if match["date"] != amz_date[:8]:
        raise AccessDeniedException("the credential scope's date is not the day of X-Amz-Date")
    if abs(dt.datetime.now(dt.UTC) - when) > MAX_SKEW:
        raise AccessDeniedException("the request signature has expired (clock skew over 15 minutes)")
    body = await request.body()
    digest = hashlib.sha256(body).hexdigest()
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed == UNSIGNED_PAYLOAD and not allow_unsigned_payload:
        raise AccessDeniedException("UNSIGNED-PAYLOAD is not accepted: sign the body (boto3 does by default)")
    if claimed is not None and claimed not in (digest, UNSIGNED_PAYLOAD):
        raise AccessDeniedException("X-Amz-Content-SHA256 does not match the body")
    signed = match["headers"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    headers["x-amz-content-sha256"] = claimed if claimed == UNSIGNED_PAYLOAD else digest  # the body as received
    if "x-amz-content-sha256" not in signed:
        headers.pop("x-amz-content-sha256")
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path.decode('latin-1')}" + (f"?{query}" if query else "")
    try:
        expected = expected_signature(request.method, url, headers, body, secret, match["key"], region, SERVICE, amz_date)
    except ValueError as exc:  # a URL or header botocore cannot canonicalise
        raise AccessDeniedException(f"the request cannot be verified: {exc}") from exc
    if not hmac.compare_digest(expected, match["signature"]):
        raise AccessDeniedException("The request signature we calculated does not match the signature you provided.")


BEARER_PATHS = ("/v1/", "/metrics")
"""Routes whose clients send ``Authorization: Bearer <token>`` (the OpenAI SDKs, Prometheus)
instead of SigV4: the token must be the secret of one of the configured credentials."""
OWN_LOGIN_PATHS = ("/console",)
"""Routes that check a login session themselves (the web console's cookie)."""
PUBLIC_PATHS = ("/health", "/docs", "/redoc", "/openapi.json", "/favicon.ico")
"""Open without credentials: the health probe, the API's description (no data), so a browser
can read ``/docs`` on a server that requires SigV4, and the console's icon."""
PUBLIC_PREFIXES = ("/docs/", "/docs-assets/")


def bearer_ok(request: Request, credentials: dict[str, str]) -> bool:
    """Whether the request carries ``Bearer <secret>`` for one of ``credentials``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    token = token.strip().encode()
    return any(hmac.compare_digest(token, secret.encode()) for secret in credentials.values())


class SigV4Middleware(BaseHTTPMiddleware):
    def __init__(self, app, credentials: dict[str, str], region: str, allow_unsigned_payload: bool = False):
        super().__init__(app)
        self.credentials, self.region, self.allow_unsigned_payload = credentials, region, allow_unsigned_payload

    async def dispatch(self, request: Request, call_next):
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith(OWN_LOGIN_PATHS + PUBLIC_PREFIXES):
            return await call_next(request)
        if path.startswith(OPENAI_PREFIX):
            return await self._openai(request, call_next)
        if path.startswith(BEARER_PATHS) and request.headers.get("authorization", "").lower().startswith("bearer "):
            if bearer_ok(request, self.credentials):
                return await call_next(request)
            return error_response(AccessDeniedException("the bearer token is not the secret of any credentials this server has"))
        try:
            await verify(request, self.credentials, self.region, self.allow_unsigned_payload)
        except AccessDeniedException as error:
            return error_response(error)
        return await call_next(request)

    async def _openai(self, request: Request, call_next):
        """The OpenAI-compatible routes: a bearer secret (or SigV4), refused with OpenAI's 401."""
        authorization = request.headers.get("authorization", "").strip()
        if authorization.startswith("AWS4-"):
            try:
                await verify(request, self.credentials, self.region, self.allow_unsigned_payload)
            except AccessDeniedException as error:
                return openai_error_response(AuthenticationException(error.message, code="invalid_api_key"))
            return await call_next(request)
        if bearer_ok(request, self.credentials):
            return await call_next(request)
        if not authorization:
            return openai_error_response(AuthenticationException(
                "no API key: send Authorization: Bearer <secret>, the secret of one of this server's --credentials"))
        return openai_error_response(AuthenticationException(
            "the API key is not the secret of any credentials this server has", code="invalid_api_key"))
