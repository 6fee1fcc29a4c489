"""The micro-batcher on a real server: concurrent requests of different sizes are run as
batches (padding-invariant models: one padded batch) and give the one-by-one results."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from images import digit_canvas, png
from live_server import run_server, server_settings, zoo_copy  # noqa: F401 - fixture


async def _embed_all(url: str, model: str, canvases: list[np.ndarray]) -> list[np.ndarray]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        rs = await asyncio.gather(*[
            c.post(f"/v1/models/{model}/embed", files=[("files", (f"{i}.png", png(a), "image/png"))])
            for i, a in enumerate(canvases)
        ])
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    return [np.asarray(r.json()["results"][0]["embedding"], np.float32) for r in rs]


def _batch_sizes(url: str, model: str) -> tuple[float, float]:
    """(batches, images) counted by the server's /metrics batch-size histogram."""
    text = httpx.get(url + "/metrics").text
    def value(metric):
        for line in text.splitlines():
            if line.startswith(metric) and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0
    return value("poolops_batch_size_count"), value("poolops_batch_size_sum")


@pytest.mark.parametrize("model", ["digits-spp", "digits-gap", "digits-fixed"])
def test_batched_equals_one_by_one(zoo_copy, model):
    rng = np.random.default_rng(0)
    sizes = [(int(rng.integers(16, 90)), int(rng.integers(16, 90))) for _ in range(24)]
    sizes += sizes[:6]  # some equal sizes too
    canvases = [digit_canvas(h, w, i) for i, (h, w) in enumerate(sizes)]
    with run_server(server_settings(zoo_copy, batch_max_size=1)) as url:
        alone = asyncio.run(_embed_all(url, model, canvases))
        batches, images = _batch_sizes(url, model)
        assert batches == images == len(canvases)  # batching off: one image per run
    with run_server(server_settings(zoo_copy, batch_max_size=32, batch_wait_ms=50)) as url:
        batched = asyncio.run(_embed_all(url, model, canvases))
        batches, images = _batch_sizes(url, model)
    assert images == len(canvases) and batches < images, "concurrent requests were not batched"
    for i, (a, b) in enumerate(zip(alone, batched)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=f"image {i} {sizes[i]}")
