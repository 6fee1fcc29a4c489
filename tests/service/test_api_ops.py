"""POST /v1/ops/{name} and friends against a real server: every op from the registry,
JSON, base64 and image inputs, .npy output, indices, backward and the error bodies."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from poolops.inputs import example_inputs
from poolops.onnx import op_model
from poolops.registry import get_op, list_ops
from support.runtime import assert_close, run
from live_server import api, client, zoo_copy  # noqa: F401 - fixtures


def b64(a: np.ndarray) -> dict:
    return {"b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode(), "shape": list(a.shape),
            "dtype": str(a.dtype)}


def test_ops_list_has_every_registered_op_with_schema(client):
    body = client.get("/v1/ops").json()
    assert [o["name"] for o in body["ops"]] == list_ops()
    for o in body["ops"]:
        assert o["params_schema"]["type"] == "object"
        assert o["backward"] == (get_op(o["name"]).onnx_backward is not None)
    assert client.get("/v1/ops/spp").json()["params_schema"]["properties"]["levels"]["default"] == [1, 2, 4]


def test_seed_max_with_indices_and_backward(client):
    r = client.post("/v1/ops/max", json={"input": [[1, 3], [2, 2]], "params": {"kernel": 2},
                                         "return_indices": True, "backward": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == [[[[3.0]]]] and body["shape"] == [1, 1, 1, 1]
    assert body["indices"] == [[[[1]]]]
    assert body["grad_input"] == [[[[0.0, 3.0 / 3.0], [0.0, 0.0]]]]
    assert body["provider"] == "CPUExecutionProvider"


def test_seed_avg_backward_with_grad_output(client):
    r = client.post("/v1/ops/avg", json={"input": [[1, 3], [2, 2]], "params": {"kernel": 2}, "backward": True,
                                         "grad_output": [[[[2.0]]]]})
    assert r.json()["output"] == [[[[2.0]]]]
    assert r.json()["grad_input"] == [[[[0.5, 0.5], [0.5, 0.5]]]]


@pytest.mark.parametrize("name", list_ops())
def test_every_op_equals_a_direct_session(client, name):
    """The server's result for each op (default parameters) is ORT's on the same graph
    (x of the op's rank; 8 channels: rotation_invariant's default orientations)."""
    spec = get_op(name)
    rng = np.random.default_rng(1)
    x = rng.random({1: (2, 8, 19), 2: (2, 8, 9, 11), 3: (2, 8, 4, 5, 6)}[spec.spatial_dims], dtype=np.float32)
    extra = example_inputs(spec.inputs[1:], x.shape, rng, spec.parse({}))
    r = client.post(f"/v1/ops/{name}", json={"input": b64(x), "inputs": {k: b64(v) for k, v in extra.items()}})
    assert r.status_code == 200, r.text
    (want,) = run(op_model(name, outputs=("y",), inputs=spec.inputs), x=x, **extra)
    got = np.asarray(r.json()["output"], np.float32)
    assert list(got.shape) == r.json()["shape"]
    assert_close(got, want)


def test_npy_output_and_3d_input(client):
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    r = client.post("/v1/ops/max", json={"input": x.tolist(), "params": {"kernel": 3}, "return_indices": True},
                    headers={"Accept": "application/x-npy"}, params={"tensor": "indices"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    idx = np.load(io.BytesIO(r.content))
    assert idx.dtype == np.int64 and idx.shape == (1, 2, 2, 2)
    assert idx[0, 0].tolist() == [[14, 17], [32, 35]]
    assert r.headers["x-poolops-shape"] == "1,2,2,2"


@pytest.mark.parametrize("name,x,params,want", [
    # one signal [L] -> [1, 1, L]; max1d with indices and backward
    ("max1d", [1, 3, 2, 2, 5], {"kernel": 2, "ceil_mode": True}, [[[3.0, 2.0, 5.0]]]),
    # one volume [D, H, W] -> [1, 1, D, H, W]; the mean of its 8 values
    ("global_avg3d", [[[1, 2], [3, 4]], [[5, 6], [7, 8]]], {}, [[[[[4.5]]]]]),
    ("adaptive_max3d", [[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]], {"output_size": [1, 1, 2]}, [[[[[7.0, 8.0]]]]]),
])
def test_1d_and_3d_ops_over_http(client, name, x, params, want):
    """The 1-D and 3-D ops take their own input forms (a signal, a volume, a batch) and
    answer as their graphs do; x of another rank is a 422 naming what the op takes."""
    r = client.post(f"/v1/ops/{name}", json={"input": x, "params": params, "backward": True})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == want
    assert np.asarray(r.json()["grad_input"]).shape == (1, 1, *np.asarray(x).shape[-(np.asarray(want).ndim - 2):])
    bad = client.post(f"/v1/ops/{name}", json={"input": np.zeros((1, 1, 1, 1, 1, 2)).tolist()})
    assert bad.status_code == 422 and "must be" in bad.text, bad.text


def test_image_upload_runs_an_op(client):
    im = Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 30, (6, 1)), mode="L")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    r = client.post("/v1/ops/global_max", files={"image": ("ramp.png", buf.getvalue(), "image/png")},
                    data={"params": "{}"})
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [1, 1, 1, 1]
    assert r.json()["output"][0][0][0][0] == pytest.approx(210 / 255)


def test_nan_and_inf_round_trip_as_strings(client):
    r = client.post("/v1/ops/max", json={"input": [[1, "NaN"], ["-Infinity", 2]], "params": {"kernel": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == [[[[1.0, "NaN"], ["-Infinity", 2.0]]]]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"input": [[1, 2], [3]]}, 422, "rectangular"),
        ({"input": [1, 2, 3]}, 422, "2-D"),
        ({"input": [[1, 2]], "params": {"kernel": 0}}, 422, "kernel"),
        ({"input": [[1, 2]], "params": {"kernal": 2}}, 422, "kernal"),
        ({"input": {"b64": "@@", "shape": [1, 1], "dtype": "float32"}}, 422, "base64"),
        ({"input": {"b64": "AAAA", "shape": [2, 2], "dtype": "float32"}}, 422, "bytes"),
        ({"input": [[1.0]], "backward": True, "params": {"kernel": 1}, "grad_output": [[1, 2]]}, 422, "grad_output"),
        ({"inputt": [[1.0]]}, 422, "inputt"),
    ],
)
def test_bad_requests_say_what_to_change(client, body, status, words):
    r = client.post("/v1/ops/max", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] or words in str(err.get("details")), err


def test_errors_for_paths_types_and_outputs(client):
    assert client.post("/v1/ops/nope", json={"input": [[1.0]]}).json()["error"]["code"] == "not_found"
    r = client.post("/v1/ops/max", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "Content-Type" in r.json()["error"]["message"]
    r = client.post("/v1/ops/avg", json={"input": [[1.0]], "params": {"kernel": 1}, "return_indices": True})
    assert r.status_code == 422 and "indices" in r.json()["error"]["message"]
    r = client.post("/v1/ops/spp", json={"input": [[1.0]], "backward": True, "inputs": {"valid": [[1, 1]]}})
    assert r.status_code == 422 and "backward takes x alone" in r.json()["error"]["message"]
    r = client.post("/v1/ops/max", json={"input": [[1.0]], "inputs": {"boxes": [[0, 0, 0, 1, 1]]}})
    assert r.status_code == 422 and "takes" in r.json()["error"]["message"]
    r = client.post("/v1/ops/stochastic", json={"input": [[-1.0, 2.0]], "params": {"kernel": 1}})
    assert r.status_code == 422 and "negative" in r.json()["error"]["message"]
    r = client.post("/v1/ops/max", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_max_unpool_forward_and_backward_over_http(client):
    """An op whose gradient graph takes another input (max_unpool's indices): the request
    sends it once, for both graphs."""
    body = {"input": [[3.0]], "inputs": {"indices": [[[[1]]]]}, "params": {"kernel": 2}, "backward": True,
            "grad_output": [[[[1.0, 2.0], [3.0, 4.0]]]]}
    r = client.post("/v1/ops/max_unpool", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == [[[[0.0, 3.0], [0.0, 0.0]]]]
    assert r.json()["grad_input"] == [[[[2.0]]]]
    r = client.post("/v1/ops/max_unpool", json={**body, "inputs": {"indices": [[[[4]]]]}})
    assert r.status_code == 422 and "indices" in r.json()["error"]["message"]


def test_issue16_variants_over_http(client):
    """se's pooled vector, GeM with p as an input, TF "SAME" padding (its indices and
    backward), each equal to the op's graph run directly, and the bad ones refused."""
    rng = np.random.default_rng(5)
    x = rng.random((2, 4, 7, 6), dtype=np.float32)
    se = example_inputs(get_op("se").inputs[1:], x.shape, rng)
    r = client.post("/v1/ops/se", json={"input": b64(x), "inputs": {k: b64(v) for k, v in se.items()},
                                        "params": {"pooled": True}})
    assert r.status_code == 200, r.text
    (want,) = run(op_model("se", pooled=True, inputs=get_op("se").inputs), x=x, **se)
    assert r.json()["shape"] == [2, 4]
    assert_close(np.asarray(r.json()["output"], np.float32), want)

    p = np.array([1.0, 2.0, 3.0, 4.5], np.float32)
    r = client.post("/v1/ops/gem", json={"input": b64(x), "inputs": {"gem_p": b64(p)}})
    assert r.status_code == 200, r.text
    (want,) = run(op_model("gem", inputs=("x", "gem_p")), x=x, gem_p=p)
    assert_close(np.asarray(r.json()["output"], np.float32), want)
    r = client.post("/v1/ops/gem", json={"input": b64(x), "inputs": {"gem_p": b64(-p)}})
    assert r.status_code == 422 and "gem_p" in r.json()["error"]["message"]

    r = client.post("/v1/ops/max", json={"input": [[1, 2, 3]], "params": {"kernel": [1, 2], "stride": 1, "tf_same": True},
                                         "return_indices": True, "backward": True})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == [[[[2.0, 3.0, 3.0]]]] and r.json()["indices"] == [[[[1, 2, 2]]]]
    assert r.json()["grad_input"] == [[[[0.0, 1.0, 2.0]]]]
    r = client.post("/v1/ops/avg", json={"input": [[1, 2, 3]], "params": {"kernel": [1, 2], "stride": 1, "tf_same": True},
                                         "backward": True})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == [[[[1.5, 2.5, 3.0]]]] and r.json()["grad_input"] == [[[[0.5, 1.0, 1.5]]]]
    r = client.post("/v1/ops/avg", json={"input": [[1, 2, 3]], "params": {"kernel": 3, "padding": 1, "tf_same": True}})
    assert r.status_code == 422 and "padding" in r.json()["error"]["message"]

    levels = [1, [2, 3]]  # SPP levels as (rows, cols) pairs
    r = client.post("/v1/ops/spp", json={"input": b64(x), "params": {"levels": levels}, "backward": True})
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [2, 4 * 7]
    (want,) = run(op_model("spp", levels=levels, outputs=("y",)), x=x)
    assert_close(np.asarray(r.json()["output"], np.float32), want)
    r = client.post("/v1/ops/spp", json={"input": b64(x), "params": {"levels": [[2, 3, 4]]}})
    assert r.status_code == 422 and "levels" in r.json()["error"]["message"]
