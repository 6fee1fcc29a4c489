"""The UI's image inputs and the life of their files.

``image_input`` is a ``gr.Image(type="filepath")`` whose preprocessing never decodes:
Gradio's own decodes an image sent as a ``data:`` URL (a 389 KB PNG can be
20000x20000) before any check. Here an upload's path is handed on as it is, a ``data:``
URL's bytes are written to a file as they are, and the handler's decoder
(``common.load_pixels``) checks the size from the header first.

Files are deleted once nothing needs them: a ``data:`` URL's file when its event is
handled; an upload when its input is replaced or cleared, or when its browser session
closes (an upload is kept while its input shows it, so that Run works again on it);
Gradio's ``delete_cache`` removes whatever is left by age.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import uuid
from pathlib import Path
from types import MethodType

import gradio as gr
from gradio.utils import is_in_or_equal

log = logging.getLogger("poolops.ui")

INLINE = "inline"  # <temp dir>/inline/: files made from data: URLs


def image_input(**kw) -> gr.Image:
    """An image input (any size, any mode) that hands its handler a file path, undecoded."""
    image = gr.Image(type="filepath", image_mode=None, **kw)
    image.preprocess = MethodType(_preprocess, image)  # Gradio's own would decode a data: URL
    return image


def _preprocess(self: gr.Image, payload) -> str | None:
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        path = save_inline(payload.url, self.GRADIO_CACHE)
        self.temp_files.add(path)  # delete_cache's, should a handler not call handled()
        return path
    # a path is one Gradio's upload route wrote (it checks those that come as files, not
    # those in a bare {"path": ...}): never another file of the server
    if not payload.path or not is_in_or_equal(payload.path, self.GRADIO_CACHE):
        raise gr.Error("send the image as an upload (or a data: URL)")
    if not Path(payload.path).is_file():
        raise gr.Error("the uploaded image is no longer on the server (uploads are deleted after a while): "
                       "upload it again")
    return str(payload.path)


def save_inline(url: str, cache_dir: str) -> str:
    """A ``data:[<type>];base64,<data>`` URL's bytes, written undecoded; returns the path."""
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise gr.Error("a data: URL image must be base64 (data:image/png;base64,...)")
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise gr.Error("the data: URL's base64 is not valid") from None
    d = Path(cache_dir) / INLINE
    d.mkdir(parents=True, exist_ok=True)
    path = d / uuid.uuid4().hex
    path.write_bytes(raw)
    return str(path)


def handled(path: str | None) -> None:
    """An event is done with ``path``: a data: URL's file goes (an upload stays for reruns)."""
    if path and Path(path).parent.name == INLINE and is_in_or_equal(path, gr_temp_dir()):
        _unlink(path)


def source_for(path: str | None) -> str:
    """The input an image upload selects (``image``, or ``matrix`` when cleared)."""
    handled(path)
    return "image" if path else "matrix"


def gr_temp_dir() -> str:
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def _unlink(path: str) -> None:
    p = Path(path)
    try:
        p.unlink(missing_ok=True)
        if p.parent.name != INLINE:
            p.parent.rmdir()  # Gradio's <temp>/<content hash>/ dir of the upload, when empty
    except OSError:
        pass


class Holds:
    """Which upload each session's image inputs show. One that no input shows any more
    (replaced, cleared, or its session closed) is deleted."""

    def __init__(self):
        self._held: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def hold(self, session: str, slot: str, path: str | None) -> None:
        with self._lock:
            old = self._held.pop((session, slot), None)
            if path:
                self._held[(session, slot)] = path
            gone = [old] if old and old != path and old not in self._held.values() else []
        self._drop(gone)

    def release(self, session: str) -> None:
        with self._lock:
            mine = [k for k in self._held if k[0] == session]
            paths = {self._held.pop(k) for k in mine}
            gone = [p for p in paths if p not in self._held.values()]
        self._drop(gone)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held.values())

    @staticmethod
    def _drop(paths: list[str]) -> None:
        top = gr_temp_dir()
        for p in paths:
            if is_in_or_equal(p, top):
                _unlink(p)


HOLDS = Holds()


def track(image: gr.Image, slot: str) -> None:
    """Record which upload ``image`` shows in each session (see ``Holds``)."""

    def on_change(path: str | None, request: gr.Request):
        if path and Path(path).parent.name == INLINE:
            handled(path)  # a data: URL: nothing to keep
            return
        HOLDS.hold(request.session_hash or "", slot, path)

    image.change(on_change, inputs=image, outputs=None, api_visibility="private")


def release_session(request: gr.Request) -> None:
    """``demo.unload``: the session's uploads go."""
    HOLDS.release(request.session_hash or "")


def usage(temp_dir: str | os.PathLike) -> tuple[int, int]:
    """(files, bytes) under Gradio's temp dir."""
    files = size = 0
    for root, _, names in os.walk(temp_dir):
        for n in names:
            try:
                size += os.stat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return files, size
