"""Gradio's temp dir under an alias: no answer names an absolute path on the server.

Gradio answers uploads, outputs and file URLs with absolute paths in its temp dir, and
its clients send those paths back. ``TempPaths`` swaps the dir for ``ui-temp`` in
answers and back in requests (the URL path and JSON bodies), so Gradio itself still sees
the real paths: one the client did not get from us is refused by Gradio as before.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

ALIAS = "ui-temp"


def _forms(path: str) -> list[str]:
    """How a path appears: as is, in a URL (``/file=``), escaped in JSON."""
    return list(dict.fromkeys([path, quote(path, safe="/"), json.dumps(path)[1:-1]]))


class TempPaths:
    def __init__(self, temp_dir: str | os.PathLike):
        real = os.path.abspath(temp_dir)
        dirs = list(dict.fromkeys([real, os.path.realpath(real)]))
        forms = sorted({f for d in dirs for f in _forms(d)}, key=len, reverse=True)
        # the dir itself, followed by a path separator or the end of a string
        self._hide = re.compile(
            b"(?:" + b"|".join(re.escape(f.encode()) for f in forms) + rb")(?=[/\"'\s\\]|$)"
        )
        self._alias = ALIAS.encode()
        self._json_dir = json.dumps(real)[1:-1].encode()
        self._url_dir = quote(real, safe="/").encode()
        self._real = real

    def hide(self, data: bytes) -> bytes:
        """An answer's bytes with the temp dir replaced by the alias."""
        return self._hide.sub(self._alias, data)

    def reveal_body(self, data: bytes) -> bytes:
        """A JSON request body with aliased paths (``"ui-temp/...``, ``file=ui-temp/...``) made real."""
        a = self._alias
        data = data.replace(b'"' + a + b"/", b'"' + self._json_dir + b"/")
        return data.replace(b"file=" + a + b"/", b"file=" + self._url_dir + b"/")

    def reveal_path(self, path: str) -> str:
        """A request path (``/gradio_api/file=ui-temp/...``) made real."""
        return path.replace(f"file={ALIAS}/", f"file={self._real}/")

    def reveal_raw_path(self, raw: bytes) -> bytes:
        return raw.replace(b"file=" + self._alias + b"/", b"file=" + self._url_dir + b"/")
