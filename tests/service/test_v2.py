"""Open Inference Protocol v2 on a real server, driven by Triton's own HTTP client
(tritonclient, binary tensors by default) and by plain JSON."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from images import digit_canvas
from live_server import api, client, zoo_copy  # noqa: F401 - fixtures


@pytest.fixture
def tc(api):
    c = triton.InferenceServerClient(api.removeprefix("http://"))
    yield c
    c.close()


def test_health_and_metadata_with_tritonclient(tc):
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready("digits-spp")
    assert not tc.is_model_ready("nope")
    meta = tc.get_model_metadata("digits-spp")
    assert [i["name"] for i in meta["inputs"]] == ["x", "valid"]
    assert meta["inputs"][0]["shape"] == [-1, 1, -1, -1]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "embedding"]
    assert tc.get_server_metadata()["name"] == "poolops"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_tritonclient_equals_direct_run(tc, zoo_copy, binary):
    x = np.stack([digit_canvas(36, 44, i) for i in range(3)])[:, None].astype(np.float32) / 255
    valid = np.array([[36, 44], [20, 30], [36, 10]], np.int64)
    inputs = [triton.InferInput("x", list(x.shape), "FP32"), triton.InferInput("valid", [3, 2], "INT64")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(valid, binary_data=binary)
    outputs = [triton.InferRequestedOutput("logits", binary_data=binary)]
    res = tc.infer("digits-spp", inputs, outputs=outputs, request_id="7")
    got = res.as_numpy("logits")
    sess = ort.InferenceSession(str(zoo_copy / "digits-spp" / "model.onnx"), providers=["CPUExecutionProvider"])
    (want,) = sess.run(["logits"], {"x": x, "valid": valid})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert res.get_response()["id"] == "7"


def test_infer_json(client):
    x = np.zeros((1, 1, 16, 16), np.float32)
    r = client.post("/v2/models/digits-gap/versions/1/infer",
                    json={"inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    names = [o["name"] for o in r.json()["outputs"]]
    assert names == ["logits", "embedding"] and r.json()["outputs"][0]["shape"] == [1, 10]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32", "data": [0.0] * 5}]}, 422),
        ({"inputs": [{"name": "x", "shape": [1, 3, 16, 16], "datatype": "FP32", "data": [0.0] * 768}]}, 422),
        ({"inputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [0.0]}]}, 422),
        ({"inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "BF77", "data": [0.0] * 256}]}, 422),
        ({"inputs": []}, 422),
    ],
)
def test_infer_errors(client, body, status):
    r = client.post("/v2/models/digits-gap/infer", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]  # OIP error body


def test_unknown_model_and_version(client):
    assert client.post("/v2/models/nope/infer", json={"inputs": []}).status_code in (404, 422)
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/digits-gap/versions/2").status_code == 404
