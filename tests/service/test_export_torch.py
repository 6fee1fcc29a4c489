"""``poolops export-torch``: an unmodified PyTorch model (stock pooling) exported with
dynamic sizes, checked against torch, registered, and served by a real server."""

from __future__ import annotations

import io
import textwrap

import httpx
import numpy as np
import pytest
from live_server import run_server, server_settings
from PIL import Image

from poolops_models.cards import load_registry
from poolops_service.cli import main

MODULE = """
import torch.nn as nn


def make():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                         nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), nn.Linear(8 * 49, 3))


def pinned():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 32 * 32, 3))
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "stocknet.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_export_register_and_serve(workdir, capsys):
    (workdir / "labels.txt").write_text("cat\ndog\nfox\n")
    argv = ["export-torch", "stocknet:make", "--example", "1,3,64,64", "--check", "37x53,100x31,48x48",
            "--register", "stocknet", "--root", str(workdir / "zoo"), "--labels", str(workdir / "labels.txt")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "37x53: worst error" in out and "FAILED" not in out and "registered in" in out
    entry = load_registry(workdir / "zoo")["stocknet"]
    assert entry.available, entry.reason
    assert entry.card.input.min_size == (37, 31) and entry.card.input.max_size == (100, 64)  # what was checked

    with run_server(server_settings(workdir / "zoo")) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/models/stocknet/predict", files={"files": ("a.png", _png(50, 41), "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["top"][0]["label"] in {"cat", "dog", "fox"}
        r = c.post("/v1/models/stocknet/embed", files={"files": ("a.png", _png(50, 41), "image/png")})
        assert r.status_code == 422 and "no embedding output" in r.text
        r = c.post("/v1/models/stocknet/predict", files={"files": ("a.png", _png(20, 20), "image/png")})
        assert 400 <= r.status_code < 500  # below the checked sizes: refused with a message, not run


def test_size_pinned_model_is_refused_naming_the_module(workdir):
    from poolops.onnx.dynamic import SizePinned

    with pytest.raises(SizePinned, match=r"module '2' \(torch\.nn\.modules\.linear\.Linear\)"):
        main(["export-torch", "stocknet:pinned", "--example", "1,3,32,32", "--out", str(workdir / "p.onnx")])


def test_bad_target_and_sizes_say_what_to_change(workdir):
    with pytest.raises(ValueError, match="package.module:factory"):
        main(["export-torch", "stocknet", "--out", "x.onnx"])
    with pytest.raises(ValueError, match="give HxW"):
        main(["export-torch", "stocknet:make", "--example", "1,3,64,64", "--check", "37by53", "--out", "x.onnx"])
