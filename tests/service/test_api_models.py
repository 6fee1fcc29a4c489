"""Models over HTTP on a real server: list, card, predict and embed (multipart and JSON),
every image mode Pillow reads, and the results equal a direct ONNX Runtime run."""

from __future__ import annotations

import base64

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from images import digit_canvas, encode, png
from live_server import COMMITTED, api, client, zoo_copy  # noqa: F401 - fixtures


def direct(zoo_copy, model: str, gray: np.ndarray) -> dict[str, np.ndarray]:
    """The model's ONNX graph run alone on one grayscale image (uint8 [H, W])."""
    sess = ort.InferenceSession(str(zoo_copy / model / "model.onnx"), providers=["CPUExecutionProvider"])
    x = (gray.astype(np.float32) / 255)[None, None]
    feeds = {"x": x}
    if "valid" in [i.name for i in sess.get_inputs()]:
        feeds["valid"] = np.array([[x.shape[2], x.shape[3]]], np.int64)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_list_and_card(client):
    body = client.get("/v1/models").json()
    assert [m["name"] for m in body["models"]] == sorted(COMMITTED)
    assert all(m["available"] and m["provider"] == "CPUExecutionProvider" for m in body["models"])
    card = client.get("/v1/models/digits-spp").json()["card"]
    assert card["labels"] == [str(i) for i in range(10)] and card["padding_invariant"] is True
    r = client.get("/v1/models/nope")
    assert r.status_code == 404 and "digits-spp" in r.json()["error"]["message"]


@pytest.mark.parametrize("model", ["digits-spp", "digits-gap", "digits-fixed"])
def test_predict_multipart_many_sizes_equals_direct_run(client, zoo_copy, model):
    canvases = [digit_canvas(40, 48, 0), digit_canvas(64, 30, 1), digit_canvas(24, 24, 2)]
    files = [("files", (f"d{i}.png", png(a), "image/png")) for i, a in enumerate(canvases)]
    # resize=none: the images as they are (the cards' size policies are tested in test_size_policy_api)
    r = client.post(f"/v1/models/{model}/predict", files=files, data={"top_k": "10", "resize": "none"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and len(body["results"]) == 3
    for a, res in zip(canvases, body["results"]):
        assert res["input_size"] == list(a.shape)
        p = softmax(direct(zoo_copy, model, a)["logits"][0].astype(np.float64))
        got = {t["index"]: t["probability"] for t in res["top"]}
        assert len(got) == 10
        np.testing.assert_allclose([got[i] for i in range(10)], p, atol=1e-5)
        assert res["top"][0]["index"] == int(p.argmax())


def test_predict_json_base64_and_embed(client, zoo_copy):
    a = digit_canvas(33, 57, 3)
    imgs = [{"b64": base64.b64encode(png(a)).decode(), "name": "a.png"}]
    r = client.post("/v1/models/layout-spp/predict", json={"images": imgs, "top_k": 1})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"][0]["top"]) == 1 and r.json()["results"][0]["name"] == "a.png"
    r = client.post("/v1/models/digits-spp/embed", json={"images": imgs, "resize": "none"})
    assert r.status_code == 200, r.text
    emb = np.asarray(r.json()["results"][0]["embedding"])
    assert r.json()["dim"] == emb.shape[0] == 64 * 21  # 64 channels x (1 + 4 + 16) SPP bins
    np.testing.assert_allclose(emb, direct(zoo_copy, "digits-spp", a)["embedding"][0], atol=1e-5)


def _modes(a: np.ndarray) -> dict[str, bytes]:
    """The same picture in every mode: the service must give one answer for all."""
    gray = Image.fromarray(a)
    rgba = gray.convert("RGBA")
    rgba.putalpha(255)
    la = gray.convert("LA")
    i16 = Image.fromarray(a.astype(np.uint16) * 257)  # 16-bit: 255 -> 65535
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored rotated; viewers rotate 90 degrees clockwise
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(a, 1)))
    return {
        "png-L": png(a),
        "png-RGB": encode(gray.convert("RGB")),
        "png-RGBA": encode(rgba),
        "png-LA": encode(la),
        "png-P": encode(gray.convert("P")),
        "png-I16": encode(i16),
        "tiff-CMYK": encode(gray.convert("RGB").convert("CMYK"), "TIFF"),
        "bmp": encode(gray, "BMP"),
        "gif": encode(gray, "GIF"),
        "webp-lossless": encode(gray.convert("RGB"), "WEBP", lossless=True),
        "jpeg-exif-rotated": encode(rotated.convert("RGB"), "JPEG", quality=100, exif=exif),
    }


def test_every_image_mode_gives_the_same_pixels(client):
    a = digit_canvas(40, 48, 5)
    ref = None
    for what, data in _modes(a).items():
        # resize=none: the decoded pixels themselves reach the model (the card's policy would scale them)
        r = client.post("/v1/models/digits-spp/embed", files=[("files", (what, data, "application/octet-stream"))],
                        data={"resize": "none"})
        assert r.status_code == 200, (what, r.text)
        res = r.json()["results"][0]
        assert res["input_size"] == [40, 48], what  # EXIF orientation applied
        emb = np.asarray(res["embedding"])
        if ref is None:
            ref = emb
        tol = 0.05 if "jpeg" in what else 1e-4  # CMYK/JPEG round trips are not exact
        np.testing.assert_allclose(emb, ref, atol=tol * max(1.0, np.abs(ref).max()), err_msg=what)


@pytest.mark.parametrize(
    "files, status, words",
    [
        ([("files", ("x.txt", b"hello", "text/plain"))], 415, "not an image"),
        ([("files", ("e.png", b"", "image/png"))], 422, "empty"),
        ([("files", ("t.png", png(digit_canvas())[:60], "image/png"))], 422, "decoded"),
        ([("files", ("tiny.png", png(np.zeros((3, 3), np.uint8)), "image/png"))], 422, "3x3"),
    ],
)
def test_bad_images_say_what_to_change(client, files, status, words):
    # resize=none: with the card's size policy a 3x3 image is scaled up to the model's scale
    r = client.post("/v1/models/digits-spp/predict", files=files, data={"resize": "none"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_request_errors(client):
    r = client.post("/v1/models/digits-spp/predict", json={"images": []})
    assert r.status_code == 422
    r = client.post("/v1/models/digits-spp/predict", json={"images": [{"b64": "%%%"}]})
    assert r.status_code == 422 and "base64" in r.json()["error"]["message"]
    r = client.post("/v1/models/nope/predict", json={"images": [{"b64": "AA=="}]})
    assert r.status_code == 404
    r = client.post("/v1/models/digits-spp/predict", files=[("files", ("a.png", png(digit_canvas()), "image/png"))],
                    data={"top_k": "zero"})
    assert r.status_code == 422 and "top_k" in r.json()["error"]["message"]
