"""A model card's size policy on a real server: the REST API (multipart and JSON),
/v2's metadata and the UI's Classify tab feed the model what ``models/size_policy.py``
makes, ``resize=none`` turns it off, each answer says which policy applied and the sizes,
and the card's size limits still hold (checked from the headers after the policy).

The committed cards have no policy: these tests give two of them one in a temporary copy
of the zoo (the graphs are unchanged; a card's sha256 is of model.onnx)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from images import digit_canvas, png
from live_server import copy_zoo, run_server, server_settings
from poolops_models import size_policy
from poolops_service.config import Settings
from poolops_service.engine import Engine
from poolops_service.engine.models import top_k

SPP = {"shorter_side": [32, 48]}  # digits-spp (padding-invariant)
GAP = {"shorter_side": [32, 32]}  # digits-gap, whose copy also takes at most 64x64
GAP_LIMITS = ((8, 8), (64, 64))
SPP_LIMITS = ((8, 8), (1024, 1024))  # set on the copy: the tests exercise the policy, not the built-in limits


@pytest.fixture(scope="module")
def policy_zoo(tmp_path_factory) -> Path:
    zoo = copy_zoo(tmp_path_factory.mktemp("policy-zoo"), ["digits-spp", "digits-gap"])
    for name, policy, limits in (("digits-spp", SPP, SPP_LIMITS), ("digits-gap", GAP, GAP_LIMITS)):
        path = zoo / name / "card.json"
        card = json.loads(path.read_text())
        card["size_policy"] = policy
        if limits:
            card["input"]["min_size"], card["input"]["max_size"] = list(limits[0]), list(limits[1])
        path.write_text(json.dumps(card, indent=2))
    return zoo


@pytest.fixture(scope="module")
def client(policy_zoo):
    with run_server(server_settings(policy_zoo)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def direct(zoo: Path, model: str, gray: np.ndarray, policy, limits) -> tuple[np.ndarray, tuple[int, int]]:
    """(embedding, fed size) of the model's graph run alone on ``gray`` (uint8 [H, W])
    resized by models/size_policy.py."""
    px = size_policy.apply((gray.astype(np.float32) / 255)[..., None], policy, limits)
    x = np.ascontiguousarray(px.transpose(2, 0, 1)[None])
    sess = ort.InferenceSession(str(zoo / model / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"x": x}
    if "valid" in [i.name for i in sess.get_inputs()]:
        feeds["valid"] = np.array([x.shape[2:]], np.int64)
    return sess.run(["embedding"], feeds)[0][0], x.shape[2:]


CANVASES = [digit_canvas(20, 30, 0), digit_canvas(100, 60, 1), digit_canvas(40, 44, 2), digit_canvas(9, 200, 3)]


def _files(canvases):
    return [("files", (f"d{i}.png", png(a), "image/png")) for i, a in enumerate(canvases)]


def _check(results, zoo, model, canvases, policy, limits, described):
    for a, res in zip(canvases, results):
        emb, fed = direct(zoo, model, a, policy, limits)
        assert res["original_size"] == list(a.shape)
        assert res["input_size"] == list(fed) == list(size_policy.target_size(*a.shape, policy, limits))
        assert res["size_policy"] == described
        np.testing.assert_allclose(res["embedding"], emb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model, policy, limits", [("digits-spp", SPP, SPP_LIMITS), ("digits-gap", GAP, GAP_LIMITS)])
def test_embed_multipart_applies_the_cards_policy(client, policy_zoo, model, policy, limits):
    canvases = CANVASES if model == "digits-spp" else CANVASES[:3]
    r = client.post(f"/v1/models/{model}/embed", files=_files(canvases))
    assert r.status_code == 200, r.text
    _check(r.json()["results"], policy_zoo, model, canvases, policy, limits, size_policy.describe(policy))
    sizes = [res["input_size"] for res in r.json()["results"]]
    if model == "digits-spp":  # up to 32, down to 48, left alone, the longer side bounded by nothing here
        assert sizes == [[32, 48], [80, 48], [40, 44], [32, 711]]


def test_embed_json_card_and_none(client, policy_zoo):
    imgs = [{"b64": base64.b64encode(png(a)).decode(), "name": f"d{i}"} for i, a in enumerate(CANVASES)]
    r = client.post("/v1/models/digits-spp/embed", json={"images": imgs})
    assert r.status_code == 200, r.text
    _check(r.json()["results"], policy_zoo, "digits-spp", CANVASES, SPP, SPP_LIMITS, "shorter side into [32, 48]")
    r = client.post("/v1/models/digits-spp/embed", json={"images": imgs, "resize": "none"})
    assert r.status_code == 200, r.text
    _check(r.json()["results"], policy_zoo, "digits-spp", CANVASES, None, SPP_LIMITS, "none")
    assert [res["input_size"] for res in r.json()["results"]] == [list(a.shape) for a in CANVASES]


def test_predict_multipart_and_json_report_policy_and_sizes(client, policy_zoo):
    a = CANVASES[1]
    for resize, fed, described in (("card", [80, 48], "shorter side into [32, 48]"), ("none", [100, 60], "none")):
        r = client.post("/v1/models/digits-spp/predict", files=_files([a]), data={"top_k": "10", "resize": resize})
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        assert res["input_size"] == fed and res["original_size"] == [100, 60] and res["size_policy"] == described
        j = client.post("/v1/models/digits-spp/predict",
                        json={"images": [{"b64": base64.b64encode(png(a)).decode()}], "top_k": 10, "resize": resize})
        assert j.status_code == 200, j.text
        assert {k: v for k, v in j.json()["results"][0].items() if k != "name"} == {
            k: v for k, v in res.items() if k != "name"}
        emb, _ = direct(policy_zoo, "digits-spp", a, SPP if resize == "card" else None, SPP_LIMITS)
        assert emb.shape == (len(emb),)


def test_card_limits_checked_after_the_policy(client):
    big = digit_canvas(100, 150, 4)  # beyond the copy's 64x64: fits once the policy makes it 32x48
    r = client.post("/v1/models/digits-gap/predict", files=_files([big]))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["input_size"] == [32, 48]
    r = client.post("/v1/models/digits-gap/predict", files=_files([big]), data={"resize": "none"})
    assert r.status_code == 422 and "100x150" in r.json()["error"]["message"], r.text
    assert "64x64" in r.json()["error"]["message"]
    wide = digit_canvas(8, 400, 5)  # 50:1 cannot fit 8x8 .. 64x64 at any scale
    for data in ({}, {"resize": "card"}):
        r = client.post("/v1/models/digits-gap/embed", files=_files([wide]), data=data)
        msg = r.json()["error"]["message"]
        assert r.status_code == 422 and "8x400" in msg and "8x8 up to 64x64" in msg and "aspect" in msg, r.text
    j = client.post("/v1/models/digits-gap/embed",
                    json={"images": [{"b64": base64.b64encode(png(wide)).decode()}], "resize": "card"})
    assert j.status_code == 422 and "8x400" in j.json()["error"]["message"]
    r = client.post("/v1/models/digits-gap/embed", files=_files([big]), data={"resize": "shrink"})
    assert r.status_code == 422 and "resize" in r.json()["error"]["message"]
    j = client.post("/v1/models/digits-gap/embed",
                    json={"images": [{"b64": base64.b64encode(png(big)).decode()}], "resize": "shrink"})
    assert j.status_code == 422


def test_openapi_and_v2_metadata_document_the_policy(client):
    spec = client.get("/openapi.json").json()
    for route in ("predict", "embed"):
        body = spec["paths"][f"/v1/models/{{name}}/{route}"]["post"]["requestBody"]["content"]
        assert body["multipart/form-data"]["schema"]["properties"]["resize"]["enum"] == ["card", "none"]
    for schema in ("PredictRequest", "EmbedRequest"):
        prop = spec["components"]["schemas"][schema]["properties"]["resize"]
        assert prop["default"] == "card" and "size_policy" in prop["description"]
    for schema in ("Prediction", "Embedding"):
        assert {"original_size", "size_policy", "input_size"} <= set(spec["components"]["schemas"][schema]["properties"])
    meta = client.get("/v2/models/digits-gap").json()
    assert meta["parameters"]["size_policy"] == GAP and meta["parameters"]["max_size"] == [64, 64]
    assert "parameters" in spec["components"]["schemas"]["V2ModelMetadata"]["properties"]


def test_ui_classify_applies_the_same_policy(policy_zoo, tmp_path):
    from poolops_service.ui import classify, common

    engine = Engine(Settings(models_dir=policy_zoo, build_missing=False, warmup_sizes=[], threads=1))
    engine.load()
    try:
        a = CANVASES[1]
        path = tmp_path / "d.png"
        Image.fromarray(a).save(path)
        runner = engine.runner("digits-spp")
        for resize, fed in ((True, (80, 48)), (False, (100, 60))):
            r = asyncio.run(classify.classify(engine, "digits-spp", str(path), 10, resize))
            assert r.ok, r.status
            assert r.input_size == fed and r.original_size == (100, 60)
            assert r.size_policy == ("shorter side into [32, 48]" if resize else "none")
            assert f"input size: {fed[0]}x{fed[1]} (HxW)" in r.status and f"size policy: {r.size_policy}" in r.status
            px = common.load_pixels(str(path), 1, 10**6)
            x = size_policy.apply(px, SPP if resize else None, SPP_LIMITS).transpose(2, 0, 1)
            want = top_k(runner.card, runner.run_batch([np.ascontiguousarray(x)])[0].logits, 10)
            np.testing.assert_allclose([t["probability"] for t in r.top], [t["probability"] for t in want], atol=1e-6)
        wide = tmp_path / "wide.png"
        Image.fromarray(digit_canvas(8, 400, 5)).save(wide)
        r = asyncio.run(classify.classify(engine, "digits-gap", str(wide), 3))
        assert not r.ok and "8x400" in r.status and "aspect" in r.status
    finally:
        engine.close()


def test_memory_reservation_counts_the_resized_pixels(tmp_path):
    """The decoding reservation counts the larger of the original and the resized pixels
    (both exist for a moment): a 16x16 image scaled up to 512x512 reserves 2 x 4 bytes x
    262144; a 600x600 one scaled down reserves its own 360000 pixels; resize=none its own."""
    from poolops_service.api.routes.models import _tensors

    zoo = copy_zoo(tmp_path / "zoo", ["digits-spp"])
    path = zoo / "digits-spp" / "card.json"
    card = json.loads(path.read_text())
    card["size_policy"] = {"shorter_side": [512, 512]}
    path.write_text(json.dumps(card))

    class Recorder:
        def __init__(self):
            self.added = []

        def add(self, nbytes, what=""):
            self.added.append(nbytes)

    engine = Engine(Settings(models_dir=zoo, build_missing=False, warmup_sizes=[], threads=1))
    engine.load()
    try:
        runner = engine.runner("digits-spp")
        for a, resize, pixels, fed in ((digit_canvas(16, 16, 6), True, 512 * 512, (512, 512)),
                                       (digit_canvas(600, 600, 7), True, 600 * 600, (512, 512)),
                                       (digit_canvas(16, 16, 6), False, 16 * 16, (16, 16))):
            rec = Recorder()
            done = asyncio.run(_tensors(engine, runner, [("a.png", png(a))], engine.settings, rec, resize))
            assert rec.added == [2 * 4 * pixels]
            assert done[0][0].shape == (1, *fed) and done[0][1] == a.shape
    finally:
        engine.close()
