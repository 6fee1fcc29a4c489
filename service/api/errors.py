"""One JSON error body for every failure: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.engine.errors import EngineError, Unavailable

log = logging.getLogger("poolops.api")

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
         413: "too_large", 415: "unsupported_media", 422: "invalid_input", 429: "too_many_requests",
         503: "unavailable"}


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict | None = None, **details
) -> JSONResponse:
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/v2"):
        # the Open Inference Protocol's error body is {"error": "<message>"}; Triton's and
        # KServe's clients read it as a string
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    body = {"error": {"code": code, "message": message, **({"details": details} if details else {})}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


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
            return error_response(request, 405, code, f"method {request.method} is not allowed here; use {allowed}", headers)
        return error_response(request, e.status_code, code, str(e.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # a bug: logged, reported without internals
        log.exception("unhandled error")
        return error_response(request, 500, "internal", f"internal error ({type(e).__name__}); it has been logged")


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
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
