"""ASGI middleware for what FastAPI leaves open: request ids and unexpected errors
(``RequestId``), the time a client may take to send a body (``BodyDeadline``) and the
body's size (``BodyLimit``)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolops_service.api.errors import error_response, internal_error

log = logging.getLogger("poolops.api")

# the id of the request being handled, for log lines (empty outside a request)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_ID_MAX = 128
_ID_UNSAFE = re.compile(rb"[^A-Za-z0-9._:/+=@-]")


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` (unsafe characters dropped, at most 128 kept), or a new one."""
    for k, v in scope.get("headers", ()):
        if k == b"x-request-id":
            rid = _ID_UNSAFE.sub(b"", v[: 4 * _ID_MAX])[:_ID_MAX].decode("ascii")
            if rid:
                return rid
            break
    return uuid.uuid4().hex


class RequestId:
    """Gives each request an id (``X-Request-ID`` on every answer, in ``scope["state"]``
    and in ``REQUEST_ID`` for logs), and answers an unexpected error with a JSON 500 that
    carries it, without re-raising: the connection stays usable (uvicorn drops a
    keep-alive connection when the app raises)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = REQUEST_ID.set(rid)
        started = False

        async def send_with_id(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request id %s)", scope.get("method"), scope.get("path"), rid)
            if not started:  # else the answer is cut short and uvicorn closes the connection
                await internal_error(Request(scope), rid)(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class BodyTimeout(HTTPException):
    """Raised from ``receive`` when the body is late (an HTTPException, like BodyTooLarge)."""

    def __init__(self, seconds: float):
        super().__init__(408, _late(seconds), headers={"Connection": "close"})


def _late(seconds: float) -> str:
    return (f"the request body did not arrive within {seconds:g} s (POOLOPS_BODY_TIMEOUT_S): "
            "send it at once, or a smaller one")


class BodyDeadline:
    """Answer 408 with ``Connection: close`` when a request's body has not all arrived
    ``seconds`` after the request started. Whatever the route makes of the exception from
    ``receive`` (some turn parse errors into 422), the answer is this 408."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline = asyncio.get_running_loop().time() + self.seconds
        complete = late = replaced = started = False

        async def timed_receive() -> Message:
            nonlocal complete, late
            if complete:  # after the body only http.disconnect comes, whenever it does
                return await receive()
            if late:
                raise BodyTimeout(self.seconds)
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                late = True
                raise BodyTimeout(self.seconds) from None
            complete = msg["type"] != "http.request" or not msg.get("more_body", False)
            return msg

        async def answer_408() -> None:
            nonlocal replaced, started
            replaced = started = True
            response = error_response(Request(scope), 408, "timeout", _late(self.seconds), {"Connection": "close"})
            await response(scope, receive, send)

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if replaced:
                return
            if late and msg["type"] == "http.response.start":
                return await answer_408()
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not late:  # else the app's error is its way of giving up on the body
                raise
        if late and not started:
            await answer_408()


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that FastAPI's body parsing passes it
    on (it turns other exceptions into 400) to the JSON error handler. The rest of the
    body is not read: the connection is closed after the answer."""

    def __init__(self, max_bytes: int):
        super().__init__(413, _message(max_bytes), headers={"Connection": "close"})


def _message(max_bytes: int) -> str:
    return (f"request body is larger than {max_bytes} bytes (POOLOPS_MAX_BODY_BYTES): "
            "send fewer or smaller images or tensors")


class BodyLimit:
    """Answer 413 once a request body exceeds ``max_bytes``: at once from Content-Length,
    else while streaming (chunked uploads), before the app has the whole body."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(Request(scope), 413, "too_large", _message(self.max_bytes), {"Connection": "close"})
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > self.max_bytes:
                        return await self._reject(scope, receive, send)
                except ValueError:
                    pass
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(scope, receive, send)
