"""Limits on a real server: body size (413 in ASGI middleware, with and without
Content-Length), image pixels (refused before decoding), tensor elements, images per
request, a full queue (503 + Retry-After) and the request timeout."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from PIL import Image

from images import digit_canvas, encode, png
from live_server import run_server, server_settings, zoo_copy  # noqa: F401 - fixture

LIMITS = dict(max_body_bytes=200_000, max_image_pixels=100_000, max_tensor_elements=10_000, max_batch_images=3)


@pytest.fixture(scope="module")
def limited(zoo_copy):
    with run_server(server_settings(zoo_copy, **LIMITS)) as url:
        yield url


def test_body_limit_with_content_length(limited):
    r = httpx.post(limited + "/v1/ops/max", content=b"[" * 300_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "POOLOPS_MAX_BODY_BYTES" in r.json()["error"]["message"]


def test_body_limit_when_streamed_without_length(limited):
    def chunks():
        for _ in range(50):
            yield b"0" * 10_000

    r = httpx.post(limited + "/v1/models/digits-spp/predict", content=chunks(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_decompression_bomb_refused_before_decoding(limited):
    bomb = encode(Image.new("1", (20_000, 20_000)))  # 400M pixels in a few kB
    assert len(bomb) < 200_000
    r = httpx.post(limited + "/v1/models/digits-spp/predict", files=[("files", ("bomb.png", bomb, "image/png"))])
    assert r.status_code == 413 and "400000000 pixels" in r.json()["error"]["message"]


def test_image_pixels_tensor_elements_and_image_count(limited):
    big = png(np.zeros((400, 400), np.uint8))
    r = httpx.post(limited + "/v1/models/digits-spp/predict", files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 413 and "POOLOPS_MAX_IMAGE_PIXELS" in r.json()["error"]["message"]
    r = httpx.post(limited + "/v1/ops/max", json={"input": np.zeros((120, 120)).tolist()})
    assert r.status_code == 413 and "elements" in r.json()["error"]["message"]
    files = [("files", (f"{i}.png", png(digit_canvas()), "image/png")) for i in range(4)]
    r = httpx.post(limited + "/v1/models/digits-spp/predict", files=files)
    assert r.status_code in (413, 422) and "POOLOPS_MAX_BATCH_IMAGES" in r.json()["error"]["message"]


def test_full_queue_is_503_with_retry_after(zoo_copy):
    s = server_settings(zoo_copy, queue_max=2, batch_max_size=1, batch_wait_ms=0)

    async def flood(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            data = png(digit_canvas(300, 300))
            return await asyncio.gather(*[
                c.post("/v1/models/digits-spp/predict", files=[("files", ("a.png", data, "image/png"))])
                for _ in range(24)
            ])

    with run_server(s) as url:
        rs = asyncio.run(flood(url))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["retry-after"].isdigit() and busy.json()["error"]["code"] == "overloaded"
        assert httpx.get(url + "/readyz").status_code == 200  # nothing broke


def test_request_timeout_is_503(zoo_copy):
    with run_server(server_settings(zoo_copy, request_timeout_s=0.0005)) as url:
        r = httpx.post(url + "/v1/models/digits-spp/predict",
                       files=[("files", ("a.png", png(digit_canvas(500, 500)), "image/png"))])
        assert r.status_code == 503 and "POOLOPS_REQUEST_TIMEOUT_S" in r.json()["error"]["message"]
        assert "retry-after" in r.headers
