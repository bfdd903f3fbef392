"""Refuse request bodies over the limit before they are parsed or stored.

A pure ASGI middleware, outermost in the app: a ``Content-Length`` over the limit is
refused before one byte is read, and a body streamed without a length is counted as it
arrives and refused at the first chunk that crosses the limit. Memory stays bounded by
the limit. (Starlette's own limiter answers in plain text, without the
``x-amzn-ErrorType`` header boto3 needs to raise a modelled error; hence this one.) Under
``/v1/`` the refusal takes OpenAI's shape, as every error there does.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunesmith.api.errors import error_response_for
from tunesmith.jobs.errors import RequestTooLargeException


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it as it is (the app's handler
    answers it in Bedrock's shape); raised outside the app, this middleware answers it."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="over this server's limit")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _refusal(self, size: str) -> RequestTooLargeException:
        return RequestTooLargeException(f"the request body is {size}; this server accepts at most {self.max_bytes:,} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > self.max_bytes:
                await error_response_for(scope["path"], self._refusal(f"{length:,} bytes"))(scope, receive, send)
                return
        received, started = 0, False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if started:
                raise
            await error_response_for(scope["path"], self._refusal(f"over {self.max_bytes:,} bytes"))(scope, receive, send)
