"""ASGI middleware: each request's body is charged to the engine's :class:`MemoryBudget`
before it is read (from Content-Length, or as it streams in), twice (the bytes and what
parsing them makes: a JSON string, base64 decoded), the reservation is kept in
``scope["state"]["reservation"]`` for the routes to add decoded inputs and answers to, and
everything is given back once the answer is sent."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolops_service.api.errors import error_response
from poolops_service.engine.budget import MemoryBudget
from poolops_service.engine.errors import Overloaded


BODY_COPIES = 2


class Inflight:
    def __init__(self, app: ASGIApp, budget: MemoryBudget):
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        res = self.budget.reservation()
        scope.setdefault("state", {})["reservation"] = res
        declared = 0
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and v.isdigit():
                declared = int(v)
        try:
            try:
                res.add(BODY_COPIES * declared, "its body")
            except Overloaded as e:
                r = error_response(Request(scope), 503, e.code, e.message,
                                   {"Retry-After": "1", "Connection": "close"})
                return await r(scope, receive, send)
            seen, charged = 0, declared

            async def counted() -> Message:
                nonlocal seen, charged
                msg = await receive()
                if msg["type"] == "http.request":
                    seen += len(msg.get("body", b""))
                    if seen > charged:  # chunked (no Content-Length): charged as it streams in
                        res.add(BODY_COPIES * (seen - charged), "its body")
                        charged = seen
                return msg

            await self.app(scope, counted, send)
        finally:
            res.release()
