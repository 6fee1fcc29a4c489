"""API keys (POOLOPS_API_KEY): ``Authorization: Bearer <key>`` on every route but health.

Unset, the service is open as before (with a warning at start when it listens beyond
loopback). Set, the service's middleware answers 401 with ``WWW-Authenticate: Bearer``
before any route runs (``KeyGate``), and the OpenAPI document declares the bearer scheme.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from poolops_service.api.errors import ERROR_SCHEMA, V2_ERROR_SCHEMA, error_response
from poolops_service.config import Settings

log = logging.getLogger("poolops.service")

# answered without a key: probes must work for orchestrators that hold no secret
HEALTH = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
MESSAGE = "this server needs an API key: send the header `Authorization: Bearer <key>` (POOLOPS_API_KEY)"


class Keys:
    """The accepted keys: comma-separated, stripped, empty ones ignored."""

    def __init__(self, spec: str | None):
        self._keys = [k.strip().encode() for k in (spec or "").split(",") if k.strip()]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, candidate: str | bytes | None) -> bool:
        """Whether ``candidate`` is one of the keys, in constant time (every key compared)."""
        if candidate is None or not self._keys:
            return False
        if isinstance(candidate, str):
            candidate = candidate.encode()
        ok = False
        for k in self._keys:
            ok |= hmac.compare_digest(k, candidate)
        return ok

    def check_scope(self, scope: Scope) -> bool:
        """Whether the request carries ``Authorization: Bearer <one of the keys>``."""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and self.check(token.strip())
        return False


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the proxy prefix (``root_path``), when present."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def reject(scope: Scope, receive: Receive, send: Send) -> None:
    """401 in the service's error format (``/v2``: the Open Inference Protocol's)."""
    if scope["type"] == "websocket":  # closed before accept: the server answers 403
        await send({"type": "websocket.close", "code": 1008})
        return
    response = error_response(Request(scope), 401, "unauthorized", MESSAGE, {"WWW-Authenticate": "Bearer"})
    await response(scope, receive, send)


class KeyGate:
    """Every HTTP and WebSocket request needs a key, except ``public`` paths and those
    under ``delegated`` prefixes (an app there checks access itself: the Gradio UI).
    Asked by the service's one middleware (``poolops_service.api.middleware.Guard``) right
    after the request id is given, before any body is charged or read."""

    def __init__(self, keys: Keys, public: Iterable[str], delegated: Iterable[str] = ()):
        self.keys = keys
        self.public = frozenset(public)
        self.delegated = tuple(p.rstrip("/") for p in delegated)

    def _open(self, path: str) -> bool:
        return path in self.public or any(path == p or path.startswith(p + "/") for p in self.delegated)

    def allows(self, scope: Scope) -> bool:
        return self._open(route_path(scope)) or self.keys.check_scope(scope)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def install(app: FastAPI, settings: Settings, delegated: Iterable[str] = ()) -> KeyGate | None:
    """The gate for ``settings.api_key`` (None when unset: then a warning if the service is
    open beyond loopback); the OpenAPI document of ``app`` declares the bearer scheme."""
    keys = Keys(settings.api_key)
    if not keys:
        if not is_loopback(settings.host):
            log.warning("POOLOPS_API_KEY is not set: every route is open to anyone who can reach %s:%s",
                        settings.host, settings.port)
        return None
    public = HEALTH + (("/metrics",) if settings.metrics_public else ())
    _document(app, public)
    return KeyGate(keys, public, delegated)


def _document(app: FastAPI, public: Iterable[str]) -> None:
    """Declare the bearer scheme in the OpenAPI document: required everywhere but ``public``."""
    inner = app.openapi
    public = set(public)

    def openapi():
        doc = inner()
        doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "one of the keys in POOLOPS_API_KEY",
        }
        doc["security"] = [{"bearer": []}]
        for path, item in doc.get("paths", {}).items():
            for op in item.values():
                if not isinstance(op, dict):
                    continue
                if path in public:
                    op["security"] = []
                    continue
                schema = V2_ERROR_SCHEMA if path.startswith("/v2") else ERROR_SCHEMA
                op.setdefault("responses", {}).setdefault("401", {
                    "description": "no or wrong API key",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": schema}},
                })
        return doc

    app.openapi = openapi
