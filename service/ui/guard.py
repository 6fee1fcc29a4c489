"""ASGI middleware in front of the Gradio app (``/ui``): who may come in, how much they may
upload, and no absolute temp path in any answer.

- Access, when POOLOPS_API_KEY is set: the login page and its static files are open;
  everything else needs Gradio's session cookie (given by logging in with a key) or a
  bearer key. Gradio's own ``login_check`` guards most of its routes but not all
  (heartbeat, cancel, ...): this guards them all.
- Uploads: at most ``max_files`` files per upload request, and none while Gradio's temp
  dir already holds ``max_stored_files`` files or ``max_stored_bytes`` (503). A body cut
  short by the size limit or the body timeout fails as a multipart error, so that Gradio
  deletes its partial files.
- Paths: see ``paths.TempPaths``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolops_service.api.auth import Keys, MESSAGE, route_path
from poolops_service.api.middleware import BodyTooLarge
from poolops_service.ui.paths import TempPaths
from poolops_service.ui.uploads import usage

# what a browser needs to show the login page and log in
PUBLIC = {"", "/", "/login", "/login/", "/theme.css", "/favicon.ico", "/manifest.json", "/robots.txt"}
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
TEXT_TYPES = (b"application/json", b"text/")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v
    return None


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class UiGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        temp_dir: str,
        keys: Keys,
        sessions: Callable[[], dict],
        max_files: int,
        max_stored_files: int,
        max_stored_bytes: int,
    ):
        self.app = app
        self.temp_dir = temp_dir
        self.paths = TempPaths(temp_dir)
        self.keys = keys
        self.sessions = sessions
        self.max_files = max_files
        self.max_stored_files = max_stored_files
        self.max_stored_bytes = max_stored_bytes

    # ------------------------------------------------------------ access

    def _logged_in(self, scope: Scope) -> bool:
        cookie = _header(scope, b"cookie")
        if not cookie:
            return False
        tokens = self.sessions()
        cookies = cookie_parser(cookie.decode("latin-1"))
        return any(k.startswith("access-token-") and v in tokens for k, v in cookies.items())

    def _allowed(self, scope: Scope, path: str) -> bool:
        if not self.keys:
            return True
        if path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            return True
        return self._logged_in(scope) or self.keys.check_scope(scope)

    # ------------------------------------------------------------ the request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = route_path(scope)
        if not self._allowed(scope, path):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _error(401, "unauthorized", MESSAGE + ", or log in at the UI's page",
                                {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        if "file=" in path:
            scope = {**scope, "path": self.paths.reveal_path(scope["path"]),
                     "raw_path": self.paths.reveal_raw_path(scope.get("raw_path") or scope["path"].encode())}
        static = path.startswith(PUBLIC_PREFIXES)
        if not static:  # answers must stay plain to be rewritten (Gradio compresses them)
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}
        if scope["method"] == "POST" and path.rstrip("/") == "/gradio_api/upload":
            refused = self._upload_refused()
            if refused is not None:
                return await refused(scope, receive, send)
            receive = self._count_files(scope, receive)
        elif scope["method"] == "POST" and (_header(scope, b"content-type") or b"").startswith(b"application/json"):
            revealed, receive = await self._reveal_json(scope, receive)
            if revealed is None:
                return await _error(400, "bad_request", "the UI takes uploaded files, not URLs to fetch")(
                    scope, receive, send)
            scope = revealed
        plain = static or scope["method"] == "HEAD"  # a HEAD answer's length is its GET's: leave it
        await self.app(scope, receive, send if plain else self._hiding(send))

    # ------------------------------------------------------------ uploads

    def _upload_refused(self) -> JSONResponse | None:
        files, size = usage(self.temp_dir)
        if files < self.max_stored_files and size < self.max_stored_bytes:
            return None
        return _error(
            503, "unavailable",
            f"the UI's upload space is full ({files} files, {size} bytes; at most {self.max_stored_files} files "
            f"and {self.max_stored_bytes} bytes): try again in a few minutes, or use the REST API",
            {"Retry-After": "60"},
        )

    def _count_files(self, scope: Scope, receive: Receive) -> Receive:
        """Count the multipart parts as they stream; fail the parse past ``max_files``."""
        ctype = (_header(scope, b"content-type") or b"").decode("latin-1")
        boundary = ctype.partition("boundary=")[2].split(";")[0].strip().strip('"').encode()
        delimiter = b"--" + boundary
        seen, tail, max_files = 0, b"", self.max_files

        async def counting() -> Message:
            nonlocal seen, tail
            try:
                msg = await receive()
            except HTTPException as e:  # too large or too late: Gradio deletes its partial files
                # on a multipart error only ("maximum allowed size" makes its answer a 413)
                size = " (maximum allowed size)" if isinstance(e, BodyTooLarge) else ""
                raise MultiPartException(f"{e.detail}{size}") from None
            if boundary and msg["type"] == "http.request":
                chunk = tail + msg.get("body", b"")
                seen += chunk.count(delimiter)
                tail = chunk[-(len(delimiter) - 1):] if len(delimiter) > 1 else b""
                if seen - 1 > max_files:  # the last delimiter closes the body
                    raise MultiPartException(f"too many files in one upload: at most {max_files}")
            return msg

        return counting

    # ------------------------------------------------------------ paths

    async def _reveal_json(self, scope: Scope, receive: Receive):
        """The whole (small, size-limited) JSON body with aliased paths made real; ``None``
        as the scope when it names a URL for Gradio to download."""
        chunks, more = [], True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = self.paths.reveal_body(b"".join(chunks))
        if b'"path":"http' in body.replace(b" ", b""):
            return None, receive
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return {**scope, "headers": headers}, replay

    def _hiding(self, send: Send) -> Send:
        """``send`` with the temp dir hidden in text answers (buffered when they have a length)."""
        state: dict = {"rewrite": False, "start": None, "buffer": []}

        async def hiding(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = dict(msg.get("headers", []))
                ctype = headers.get(b"content-type", b"")
                state["rewrite"] = ctype.startswith(TEXT_TYPES) and b"content-encoding" not in headers
                if state["rewrite"] and b"content-length" in headers:
                    state["start"] = msg  # sent with the body, its length corrected
                    return
                return await send(msg)
            if msg["type"] != "http.response.body" or not state["rewrite"]:
                return await send(msg)
            if state["start"] is None:  # streamed (server-sent events): whole messages per chunk
                return await send({**msg, "body": self.paths.hide(msg.get("body", b""))})
            state["buffer"].append(msg.get("body", b""))
            if msg.get("more_body", False):
                return
            body = self.paths.hide(b"".join(state["buffer"]))
            start = state["start"]
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return hiding
