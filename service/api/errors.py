"""One JSON error body for every failure: ``{"error": {"code", "message", ...}}``.

No answer echoes much of its request: every message and detail is clipped (``clip``)
to about 200 characters of what the client sent, with a note of the full length.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from poolops_service.engine.errors import EngineError, Unavailable

log = logging.getLogger("poolops.api")

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
         408: "timeout", 413: "too_large", 415: "unsupported_media", 422: "invalid_input", 429: "too_many_requests",
         500: "internal", 503: "unavailable"}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

QUOTE = 200  # characters of a client's value an answer may quote
_MAX_ITEMS = 20  # list entries (e.g. validation problems) an answer may list
_QUOTED = re.compile(r"'(?:[^'\\]|\\.){%d,}'|\"(?:[^\"\\]|\\.){%d,}\"" % (QUOTE + 1, QUOTE + 1))


def _shorten(text: str, keep: int) -> str:
    return f"{text[:keep]}… ({len(text)} characters in all)"


def clip(text: str) -> str:
    """``text`` with each quoted value longer than ``QUOTE`` cut short, and the whole kept
    to about two such lengths (start and end kept: the end often says what to change)."""
    if not text.isascii():  # lone surrogates (JSON "\\ud800") cannot be written as UTF-8
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= QUOTE:
        return text
    if len(text) <= 100_000:  # beyond, the start and the end are all that is kept anyway
        text = _QUOTED.sub(lambda m: _shorten(m.group(0), QUOTE) + m.group(0)[0], text)
    if len(text) > 2 * QUOTE + 100:
        text = f"{text[:QUOTE + 100]} … ({len(text)} characters in all) … {text[-QUOTE // 2:]}"
    return text


def clip_value(v: Any, depth: int = 0) -> Any:
    """A detail value with every string clipped and lists cut to their first entries."""
    if isinstance(v, str):
        return clip(v)
    if depth > 4:
        return clip(repr(v))
    if isinstance(v, dict):
        return {clip(str(k)): clip_value(x, depth + 1) for k, x in itertools.islice(v.items(), _MAX_ITEMS)}
    if isinstance(v, (list, tuple)):
        items = [clip_value(x, depth + 1) for x in v[:_MAX_ITEMS]]
        return items + [f"… {len(v) - _MAX_ITEMS} more"] if len(v) > _MAX_ITEMS else items
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):  # str() of a huge int fails (and JSON would carry all its digits)
        return v if v.bit_length() <= 64 else f"a number of {v.bit_length()} bits"
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)  # JSON has no NaN or infinity
    return clip(str(v))


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict | None = None, **details
) -> JSONResponse:
    message = clip(message)
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/v2"):
        # the Open Inference Protocol's error body is {"error": "<message>"}; Triton's and
        # KServe's clients read it as a string
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    error = {"code": code, "message": message}
    if details:
        error["details"] = clip_value(details)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def internal_error(request: Request, request_id: str) -> JSONResponse:
    """The answer to a bug: no internals, the request id to find it in the logs."""
    message = f"internal error; it has been logged with request id {request_id}"
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/v2"):
        return JSONResponse({"error": message}, status_code=500)
    return JSONResponse({"error": {"code": "internal", "message": message, "request_id": request_id}}, status_code=500)


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route fully matches at this path. Asked of each route with each
    method, since not every route says its methods (FastAPI's included routers do not)."""
    routes = request.app.router.routes
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def install(app: FastAPI) -> None:
    @app.exception_handler(EngineError)
    async def engine_error(request: Request, e: EngineError):
        headers = {"Retry-After": str(max(1, round(e.retry_after)))} if isinstance(e, Unavailable) else None
        return error_response(request, e.status, e.code, e.message, headers, **e.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {"msg": "invalid request"}
        msg = f"{_loc(first)}: {first['msg']}" + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else "")
        problems = [{"at": _loc(x), "problem": x["msg"]} for x in errs]
        return error_response(request, 422, "invalid_input", msg, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        code = CODES.get(e.status_code, "error")
        headers = getattr(e, "headers", None)
        if e.status_code == 405:  # Starlette lists only the first matching route's methods
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            message = f"method {request.method} is not allowed here; use {' or '.join(allowed)}"
            return error_response(request, 405, code, message, headers)
        return error_response(request, e.status_code, code, str(e.detail), headers)
    # unexpected errors are answered by poolops_service.api.middleware.Guard, which keeps the
    # connection open (Starlette's handler for Exception re-raises, and uvicorn then drops it)


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
                "request_id": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


V2_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def responses(*statuses: int, v2: bool = False) -> dict:
    """OpenAPI ``responses`` entries for the error statuses a route can answer."""
    schema = V2_ERROR_SCHEMA if v2 else ERROR_SCHEMA
    return {s: {"description": CODES.get(s, "error"), "content": {"application/json": {"schema": schema}}}
            for s in statuses}
