"""The service's one ASGI middleware (``Guard``) for what FastAPI leaves open, in one pass
per request: request ids and unexpected errors, the API key, the in-flight memory budget,
the time a client may take to send a body and the body's size."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolops_service.api.auth import KeyGate, reject
from poolops_service.api.errors import error_response, internal_error
from poolops_service.engine.budget import MemoryBudget
from poolops_service.engine.errors import Overloaded

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
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex (whose UUID object costs more)


class BodyTimeout(HTTPException):
    """Raised from ``receive`` when the body is late (an HTTPException, like BodyTooLarge):
    whatever the route makes of it (some turn parse errors into 422), the answer is a 408."""

    def __init__(self, seconds: float):
        super().__init__(408, _late(seconds), headers={"Connection": "close"})


def _late(seconds: float) -> str:
    return (f"the request body did not arrive within {seconds:g} s (POOLOPS_BODY_TIMEOUT_S): "
            "send it at once, or a smaller one")


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that FastAPI's body parsing passes it
    on (it turns other exceptions into 400) to the JSON error handler. The rest of the
    body is not read: the connection is closed after the answer."""

    def __init__(self, max_bytes: int):
        super().__init__(413, _message(max_bytes), headers={"Connection": "close"})


def _message(max_bytes: int) -> str:
    return (f"request body is larger than {max_bytes} bytes (POOLOPS_MAX_BODY_BYTES): "
            "send fewer or smaller images or tensors")


BODY_COPIES = 2
"""A body is charged twice: the bytes and what parsing them makes (a JSON string, base64 decoded)."""


class Guard:
    """Around the app, for each HTTP request in this order:

    1. an id: the client's ``X-Request-ID`` (sanitised) or a new one, on every answer, in
       ``scope["state"]["request_id"]`` and in ``REQUEST_ID`` for logs;
    2. the API key (``gate``, when one is set; WebSockets too): 401 before any work;
    3. the body charged to the in-flight memory budget before it is read (from
       Content-Length, or as it streams in), ``BODY_COPIES`` times: 503 with Retry-After
       beyond it; the reservation is ``scope["state"]["reservation"]`` for the routes to add
       decoded inputs and answers to, all given back once the answer is sent;
    4. 413 with ``Connection: close`` once the body exceeds ``max_bytes``: at once from
       Content-Length, else while streaming, before the app has the whole body (the rest is
       not read);
    5. 408 with ``Connection: close`` when the body has not all arrived ``body_timeout_s``
       after the request started, whatever the route made of the error from ``receive``;
    6. an unexpected error answered with a JSON 500 carrying the id, without re-raising: the
       connection stays usable (uvicorn drops a keep-alive connection when the app raises).

    One middleware rather than one per concern: each layer costs a call, closures and a
    wrapped ``receive`` and ``send`` per request."""

    def __init__(self, app: ASGIApp, budget: MemoryBudget, max_bytes: int, body_timeout_s: float,
                 gate: KeyGate | None = None):
        self.app = app
        self.budget = budget
        self.max_bytes = max_bytes
        self.seconds = body_timeout_s
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket" and self.gate is not None and not self.gate.allows(scope):
                return await reject(scope, receive, send)
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        id_header = (b"x-request-id", rid.encode())
        token = REQUEST_ID.set(rid)
        res = None
        started = late = replaced = False

        async def send_with_id(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg = {**msg, "headers": [*msg.get("headers", []), id_header]}
            await send(msg)

        async def answer(status: int, code: str, message: str, headers: dict) -> None:
            await error_response(Request(scope), status, code, message, headers)(scope, receive, send_with_id)

        try:
            if self.gate is not None and not self.gate.allows(scope):
                return await reject(scope, receive, send_with_id)
            res = state["reservation"] = self.budget.reservation()
            declared, too_long = 0, False
            for k, v in scope.get("headers", ()):
                if k == b"content-length":
                    if v.isdigit():
                        declared = int(v)
                    try:
                        too_long = too_long or int(v) > self.max_bytes
                    except ValueError:
                        pass
            try:
                res.add(BODY_COPIES * declared, "its body")
            except Overloaded as e:
                return await answer(503, e.code, e.message, {"Retry-After": "1", "Connection": "close"})
            if too_long:
                return await answer(413, "too_large", _message(self.max_bytes), {"Connection": "close"})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.seconds
            complete = False
            seen, charged = 0, declared

            async def body_receive() -> Message:
                nonlocal complete, late, seen, charged
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
                if msg["type"] == "http.request":
                    complete = not msg.get("more_body", False)
                    seen += len(msg.get("body", b""))
                    if seen > charged:  # chunked (no Content-Length): charged as it streams in
                        res.add(BODY_COPIES * (seen - charged), "its body")
                        charged = seen
                    if seen > self.max_bytes:
                        raise BodyTooLarge(self.max_bytes)
                else:
                    complete = True
                return msg

            async def guarded_send(msg: Message) -> None:
                nonlocal replaced
                if replaced:
                    return
                if late and msg["type"] == "http.response.start":
                    replaced = True
                    return await answer(408, "timeout", _late(self.seconds), {"Connection": "close"})
                await send_with_id(msg)

            try:
                await self.app(scope, body_receive, guarded_send)
            except BodyTooLarge:
                if not started:
                    await answer(413, "too_large", _message(self.max_bytes), {"Connection": "close"})
            except Exception:
                if not late:  # else the app's error is its way of giving up on the body
                    raise
            if late and not started:
                await answer(408, "timeout", _late(self.seconds), {"Connection": "close"})
        except Exception:
            log.exception("unhandled error in %s %s (request id %s)", scope.get("method"), scope.get("path"), rid)
            if not started:  # else the answer is cut short and uvicorn closes the connection
                await internal_error(Request(scope), rid)(scope, receive, send_with_id)
        finally:
            if res is not None:
                res.release()
            REQUEST_ID.reset(token)
