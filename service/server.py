"""uvicorn's configuration from Settings, shared by ``poolops serve`` and the tests' server.

uvicorn bounds idle keep-alive connections and (``limit_concurrency``) open connections
and requests in flight, but it waits forever for a request's headers: a client that opens
connections and sends a few bytes each holds them. ``header_timeout`` closes those. The
time for a request's body is bounded in ASGI (``poolops_service.api.middleware.Guard``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from poolops_service.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn
    HttpToolsProtocol = None

TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"content-length: 43\r\nconnection: close\r\n\r\n"
               b"the request headers did not arrive in time\n")


class HeaderTimeout:
    """Mixin for uvicorn's HTTP protocols: closes the connection when a request's headers
    have not all arrived ``header_timeout`` seconds after the connection opened or after
    the request's first byte. A client that sent part of a request is told so (408)."""

    def __init__(self, *args: Any, header_timeout: float, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = False

    def _awaiting_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._header_bytes = False

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers():
            return
        if self._header_bytes:
            self.transport.write(TIMEOUT_408)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers():
            # between requests uvicorn's keep-alive timer runs; the first byte of a request stops it
            self._header_bytes = True
            if self._header_timer is None:
                self._arm()
        super().data_received(data)
        if not self._awaiting_headers():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class H11HeaderTimeout(HeaderTimeout, H11Protocol):
    pass


if HttpToolsProtocol is not None:
    class HttpToolsHeaderTimeout(HeaderTimeout, HttpToolsProtocol):
        pass

    _PROTOCOL: type = HttpToolsHeaderTimeout
else:  # pragma: no cover
    _PROTOCOL = H11HeaderTimeout


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` (less the app, the log
    level and the process count, which the caller chooses)."""
    return dict(
        host=settings.host,
        port=settings.port,
        root_path=settings.root_path,
        # uvicorn counts the connection asking, so N + 1 lets N be open (and N requests run)
        limit_concurrency=settings.max_connections + 1,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        # a partial of a module-level class: picklable for uvicorn's worker processes
        http=functools.partial(_PROTOCOL, header_timeout=settings.header_timeout_s),
    )
