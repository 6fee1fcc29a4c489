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


def _largest_batch(url: str, model: str) -> float:
    """The smallest histogram bound holding every batch of ``model`` (its largest batch, up to
    the buckets' resolution)."""
    text = httpx.get(url + "/metrics").text
    count = _batch_sizes(url, model)[0]
    for line in text.splitlines():
        if line.startswith("poolops_batch_size_bucket") and f'model="{model}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            if float(line.rsplit(" ", 1)[1]) == count:
                return float(le)
    raise AssertionError(f"no batch-size buckets for {model}")


def test_model_batch_limit(zoo_copy):
    """POOLOPS_MODEL_BATCH_MAX_SIZE caps one model's batches; the others keep the global size."""
    canvases = [digit_canvas(28, 28, i) for i in range(24)]
    settings = server_settings(zoo_copy, batch_max_size=32, batch_wait_ms=50, model_batch_max_size={"digits-gap": 2})
    with run_server(settings) as url:
        limited = asyncio.run(_embed_all(url, "digits-gap", canvases))
        free = asyncio.run(_embed_all(url, "digits-spp", canvases))
        assert _largest_batch(url, "digits-gap") <= 2
        batches, images = _batch_sizes(url, "digits-gap")
        assert images == 24 and 12 <= batches < 24  # batched, two at a time at most
        assert _largest_batch(url, "digits-spp") > 2
        config = httpx.get(url + "/v2/models/digits-gap/config").json()
        assert config["max_batch_size"] == 2
        assert httpx.get(url + "/v2/models/digits-spp/config").json()["max_batch_size"] == 32
    assert len(limited) == len(free) == 24
