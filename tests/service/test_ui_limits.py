"""The UI obeys the service's limits, on a real server driven through Gradio's own HTTP
protocol (upload, queue/join, queue/data): an image is checked from its header before
any decoding on every tab (a 389 KB ``data:`` URL of 20000x20000 is refused without its
memory), uploads are bounded in count and stored size, their files are deleted when no
input shows them any more, and no answer names an absolute path on the server."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import copy_zoo, run_server, server_settings
from PIL import Image

from poolops_service.ui.uploads import INLINE

# an absolute path of the kind a server has (a URL's path does not start like this)
ABSOLUTE = re.compile(r"(?<![\w.:/=-])/(?:tmp|home|root|work|usr|var|opt|srv|etc|proc|app|private)/")
UI = Path(__file__).resolve().parents[2] / "service" / "ui"


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """An 8-bit grey PNG of w x h zeros, compressed row by row (never held decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(w + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# ---------------------------------------------------------------- Gradio's protocol


class Ui:
    """Gradio's HTTP protocol, as its browser client speaks it."""

    def __init__(self, client: httpx.Client):
        self.c = client
        cfg = client.get("/ui/config").json()
        self.elem = {c["id"]: c.get("props", {}).get("elem_id") for c in cfg["components"]}
        self.deps = cfg["dependencies"]

    def deps_of(self, elem_id: str, event: str) -> list[dict]:
        return [d for d in self.deps if any(self.elem.get(t[0]) == elem_id and t[1] == event for t in d["targets"])]

    def call(self, dep: dict, data: list, session: str) -> tuple[dict, str]:
        """Run one event; (its process_completed message, every byte the server sent)."""
        r = self.c.post("/ui/gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0],
            "session_hash": session})
        assert r.status_code == 200, r.text
        seen = [r.text]
        with self.c.stream("GET", "/ui/gradio_api/queue/data", params={"session_hash": session}) as s:
            for line in s.iter_lines():
                seen.append(line)
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        return msg, "\n".join(seen)
        raise AssertionError("the event never completed: " + "\n".join(seen))

    def run(self, elem_id: str, data: list, session: str) -> tuple[dict, str]:
        (dep,) = self.deps_of(elem_id, "click")
        return self.call(dep, data, session)

    def upload(self, *files: tuple[str, bytes]) -> httpx.Response:
        return self.c.post("/ui/gradio_api/upload", files=[("files", (n, b, "image/png")) for n, b in files])


def file_data(path: str, name: str = "a.png") -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def tab_inputs(image) -> dict[str, list]:
    """Each tab's Run inputs with ``image`` as its image (and the image chosen as input)."""
    return {
        "pg-run": ["max", '{"kernel": 2}', "image", image, "1 2\n3 4", "gray", 0, False, ""],
        "cmp-run": [["max"], "{}", "image", image, "1 2\n3 4", "gray", 0],
        "spp-run": [image, 7, 10, "1,2", "adaptive", "max", "gray", ""],
        "cls-run": ["digits-spp", image, 3, True],
    }


@pytest.fixture(scope="module")
def gr_temp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gradio")


@pytest.fixture(scope="module")
def server(tmp_path_factory, gr_temp):
    zoo = copy_zoo(tmp_path_factory.mktemp("ui-zoo"), ["digits-spp"])
    with run_server(server_settings(zoo, ui=True, warmup_sizes=[], gradio_temp_dir=gr_temp)) as url:
        yield url


@pytest.fixture
def ui(server):
    with httpx.Client(base_url=server, timeout=120) as c:
        yield Ui(c)


def stored(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- tests


def test_no_ui_module_turns_pillows_guard_off():
    for f in UI.glob("*.py"):
        assert "MAX_IMAGE_PIXELS" not in f.read_text(), f


def test_data_url_bomb_is_refused_on_every_tab_without_its_memory(ui, gr_temp):
    bomb = bomb_png(20_000, 20_000)
    assert len(bomb) < 400_000  # 389 KB
    small = data_url(png((np.arange(600) % 256).astype(np.uint8).reshape(20, 30)))
    for elem, data in tab_inputs({"url": small}).items():  # warm every path up
        msg, _ = ui.run(elem, data, "warm")
        assert msg["success"], (elem, msg)

    rss = memory_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so it shows this test's peak
    for elem, data in tab_inputs({"url": data_url(bomb)}).items():
        msg, text = ui.run(elem, data, "bomb")
        assert "400000000 pixels" in text, (elem, text[-500:])
    growth_mb = (memory_kb("VmHWM") - rss) / 1024
    assert growth_mb < 100, f"refusing the bomb raised peak memory by {growth_mb:.0f} MB"
    assert not list((gr_temp / INLINE).glob("*")), "data: URL files are deleted once handled"


def test_uploads_and_answers_name_no_absolute_path(ui, gr_temp):
    r = ui.upload(("noise.png", png((np.random.default_rng(0).random((40, 30)) * 255).astype(np.uint8))))
    assert r.status_code == 200
    (path,) = r.json()
    assert not path.startswith("/") and str(gr_temp) not in r.text, r.text
    msg, text = ui.run("pg-run", ["max", '{"kernel": 2}', "image", file_data(path), "", "gray", 0, True, ""], "paths")
    assert msg["success"] and "y: [1, 1, 20, 15]" in msg["output"]["data"][0]
    for answer in (r.text, text, ui.c.get("/ui/").text, ui.c.get("/ui/config").text, ui.c.get("/openapi.json").text):
        assert str(gr_temp) not in answer and not ABSOLUTE.search(answer), ABSOLUTE.search(answer)
    # the gallery's images are served under their public name
    url = msg["output"]["data"][1][0]["image"]["url"]
    assert "/gradio_api/file=ui-temp/" in url
    img = ui.c.get(url)
    assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
    # a path that Gradio did not hand out (or the real one, unaliased) is not served
    assert ui.c.get("/ui/gradio_api/file=/etc/hostname").status_code in (403, 404)


def test_paths_and_urls_that_are_not_uploads_are_refused(ui):
    msg, text = ui.run("cls-run", ["digits-spp", {"path": "/etc/hostname"}, 3, True], "other-file")
    assert "as an upload" in text and "/etc/hostname" not in text.split("as an upload")[0][-200:]
    r = ui.c.post("/ui/gradio_api/queue/join", json={
        "data": ["digits-spp", file_data("http://127.0.0.1:9/big.png"), 3, True], "fn_index": 0, "session_hash": "u"})
    assert r.status_code == 400 and "not URLs" in r.json()["error"]["message"]


def test_upload_file_count_is_bounded(ui, gr_temp):
    before = stored(gr_temp)
    files = [(f"{i}.png", png(np.full((8, 8), i, np.uint8))) for i in range(5)]
    r = ui.upload(*files)
    assert r.status_code == 400 and "at most 4" in r.text
    assert stored(gr_temp) == before, "a refused upload leaves no file"
    assert ui.upload(*files[:4]).status_code == 200


def test_uploads_are_deleted_when_replaced_and_when_the_session_closes(ui, gr_temp):
    hold = next(d for d in ui.deps_of("pg-image", "change") if not d["outputs"])
    a, b = (ui.upload((f"{n}.png", png(np.full((9, 9), v, np.uint8)))).json()[0] for n, v in (("a", 1), ("b", 2)))
    real = {p: gr_temp / p.removeprefix("ui-temp/") for p in (a, b)}
    assert real[a].is_file() and real[b].is_file()
    ui.call(hold, [file_data(a)], "closing")
    ui.call(hold, [file_data(b)], "closing")  # b replaces a in this session's input
    assert not real[a].exists() and real[b].is_file()
    _, text = ui.run("cls-run", ["digits-spp", file_data(a), 3, True], "closing")
    assert "no longer on the server" in text and "upload it again" in text
    # the browser's heartbeat stream ends: Gradio runs the unload event
    with ui.c.stream("GET", "/ui/gradio_api/heartbeat/closing") as s:
        next(s.iter_lines())
    deadline = time.monotonic() + 20
    while real[b].exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not real[b].exists(), "the closed session's upload is deleted"


def test_stored_uploads_and_cut_bodies_are_bounded(tmp_path):
    zoo = copy_zoo(tmp_path / "zoo", ["digits-spp"])
    gr_dir = tmp_path / "gr"
    s = server_settings(zoo, ui=True, warmup_sizes=[], gradio_temp_dir=gr_dir, max_body_bytes=4096, body_timeout_s=1.0)
    with run_server(s) as url, httpx.Client(base_url=url) as c:
        ui = Ui(c)
        rng = np.random.default_rng(1)
        blobs = [rng.integers(0, 255, 3000, np.uint8).tobytes() for _ in range(12)]
        codes = [ui.upload((f"{i}.png", b)).status_code for i, b in enumerate(blobs)]
        # 8 bodies of 4096 bytes: full after about 11 files of 3000 bytes
        assert codes[:10] == [200] * 10 and codes[-1] == 503, codes
        r = ui.upload(("x.png", b"x"))
        assert r.status_code == 503 and r.headers["retry-after"] and "upload space is full" in r.json()["error"]["message"]
        for p in gr_dir.rglob("*.png"):
            p.unlink()
        before = stored(gr_dir)

        def body(pause: float = 0):  # no Content-Length: cut short while Gradio writes it
            yield b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n\r\n"
            for _ in range(4):
                yield bytes(1500)
                time.sleep(pause)

        multipart = {"content-type": "multipart/form-data; boundary=b"}
        r = c.post("/ui/gradio_api/upload", content=body(), headers=multipart)
        assert r.status_code == 413
        assert stored(gr_dir) == before, "no partial file is left"
        r = c.post("/ui/gradio_api/upload", content=body(pause=0.6), headers=multipart)  # slower than 1 s
        assert r.status_code == 408 and "POOLOPS_BODY_TIMEOUT_S" in r.text
        assert stored(gr_dir) == before, "no partial file is left"
