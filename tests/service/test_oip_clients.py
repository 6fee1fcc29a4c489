"""One script, Triton's two clients: ``tritonclient.http`` and ``tritonclient.grpc`` against
one real server (uvicorn + the gRPC port in the same process): metadata, inference of
mixed-size images from concurrent requests (batched, equal to one-by-one), Triton's
classification extension, statistics, and the repository API (index, a model registered
by ``poolops export-torch --register`` loaded with no restart, a broken folder refused while
the working model keeps serving, unload, load)."""

from __future__ import annotations

import shutil
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from images import digit_canvas
from live_server import copy_zoo, free_port, run_server, server_settings
from poolops_models.cards import MODEL

MIXED = [(16, 16), (40, 48), (33, 21), (64, 30), (40, 48), (16, 70), (57, 57), (20, 20)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    zoo = copy_zoo(tmp_path_factory.mktemp("oipzoo"), ["digits-spp", "digits-gap", "digits-fixed"])
    grpc_port = free_port()
    # a wait lets the concurrent requests below meet in batches on a busy machine
    settings = server_settings(zoo, grpc_port=grpc_port, batch_max_size=32, batch_wait_ms=50,
                               model_batch_max_size={"digits-fixed": 4})
    with run_server(settings) as url:
        yield {"http": url.removeprefix("http://"), "grpc": f"127.0.0.1:{grpc_port}", "zoo": zoo}


class Client:
    """The few calls of the script, over either client (their answers differ in form only)."""

    def __init__(self, kind: str, url: str):
        self.kind = kind
        self.mod = thttp if kind == "http" else tgrpc
        self.url = url
        self.c = self.mod.InferenceServerClient(url)

    def fresh(self) -> "Client":
        return Client(self.kind, self.url)

    def metadata(self, name: str) -> dict:
        if self.kind == "http":
            return self.c.get_model_metadata(name)
        return self.c.get_model_metadata(name, as_json=True)

    def infer(self, name: str, x: np.ndarray, valid: np.ndarray | None = None, outputs=("logits",),
              class_count: int = 0):
        inputs = [self.mod.InferInput("x", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        if valid is not None:
            inputs.append(self.mod.InferInput("valid", list(valid.shape), "INT64"))
            inputs[1].set_data_from_numpy(valid)
        wanted = [self.mod.InferRequestedOutput(o, class_count=class_count) for o in outputs]
        res = self.c.infer(name, inputs, outputs=wanted)
        return {o: res.as_numpy(o) for o in outputs}

    def stats(self, name: str) -> dict:
        if self.kind == "http":
            s = self.c.get_inference_statistics(name)
        else:  # protobuf JSON writes 64-bit integers as strings
            s = self.c.get_inference_statistics(name, as_json=True)
        (m,) = s["model_stats"]
        ints = lambda d: {k: int(d.get(k, 0)) for k in ("count", "ns")}  # noqa: E731 - proto JSON drops zeros
        return {"inference_count": int(m.get("inference_count", 0)), "execution_count": int(m.get("execution_count", 0)),
                **{k: ints(m["inference_stats"].get(k, {})) for k in
                   ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")}}

    def index(self) -> dict[str, dict]:
        if self.kind == "http":
            models = self.c.get_model_repository_index()
        else:
            models = self.c.get_model_repository_index(as_json=True).get("models", [])
        return {m["name"]: m for m in models}

    def close(self) -> None:
        self.c.close()


@pytest.fixture(params=["http", "grpc"])
def client(request, served):
    c = Client(request.param, served[request.param])
    yield c
    c.close()


def _x(h: int, w: int, seed: int) -> np.ndarray:
    return (digit_canvas(h, w, seed).astype(np.float32) / 255)[None, None]


def test_health_and_metadata(client):
    assert client.c.is_server_live() and client.c.is_server_ready()
    assert client.c.is_model_ready("digits-spp") and not client.c.is_model_ready("nope")
    meta = client.metadata("digits-spp")
    assert [i["name"] for i in meta["inputs"]] == ["x", "valid"]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "embedding"]
    server = client.c.get_server_metadata() if client.kind == "http" else client.c.get_server_metadata(as_json=True)
    assert server["name"] == "poolops"
    assert {"classification", "statistics", "model_repository"} <= set(server["extensions"])


def test_model_config(client):
    """Triton's model configuration: max_batch_size is the model's own batch limit."""
    get = (lambda n: client.c.get_model_config(n)) if client.kind == "http" else (
        lambda n: client.c.get_model_config(n, as_json=True)["config"])
    spp, fixed = get("digits-spp"), get("digits-fixed")
    assert (int(spp["max_batch_size"]), int(fixed["max_batch_size"])) == (32, 4)
    assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in spp["input"]] == [
        ("x", "TYPE_FP32", [1, -1, -1]), ("valid", "TYPE_INT64", [2])]
    assert [o["name"] for o in fixed["output"]] == ["logits", "embedding"]
    assert spp["parameters"]["max_request_images"]["string_value"] == "32"
    with pytest.raises(Exception, match="unknown model 'nope'"):
        get("nope")


@pytest.mark.parametrize("model", ["digits-spp", "digits-fixed"])
def test_mixed_sizes_batched_equal_one_by_one(client, model):
    """Concurrent requests of different sizes run in shared batches (the statistics count
    fewer runs than images) and each answer equals the same image's request alone: padded
    groups with ``valid`` for a padding-invariant model (digits-spp), equal sizes only for
    one that is not (digits-fixed). One request holds a padded batch with ``valid``, or
    images of one size."""
    images = [_x(h, w, i) for i, (h, w) in enumerate(MIXED)]
    alone = [client.infer(model, x, outputs=("logits", "embedding")) for x in images]
    before = client.stats(model)

    def one(i: int):
        c = client.fresh()
        try:
            return c.infer(model, images[i], outputs=("logits", "embedding"))
        finally:
            c.close()

    with ThreadPoolExecutor(len(images)) as pool:
        together = list(pool.map(one, range(len(images))))
    after = client.stats(model)
    runs, imgs = after["execution_count"] - before["execution_count"], after["inference_count"] - before["inference_count"]
    assert imgs == len(images) and runs < imgs, (runs, imgs)
    for i, (a, b) in enumerate(zip(alone, together)):
        for o in ("logits", "embedding"):
            np.testing.assert_allclose(b[o], a[o], rtol=1e-5, atol=1e-5 * np.abs(a[o]).max(), err_msg=f"{i} {MIXED[i]}")

    # one request, many images: padded with valid sizes (padding-invariant) or of one size
    if model == "digits-spp":
        sizes = [(40, 48), (16, 30), (33, 21)]
        x = np.zeros((3, 1, 40, 48), np.float32)
        for j, (h, w) in enumerate(sizes):
            x[j, :, :h, :w] = _x(h, w, j)[0]
        got = client.infer(model, x, np.array(sizes, np.int64))["logits"]
        want = [client.infer(model, _x(h, w, j))["logits"][0] for j, (h, w) in enumerate(sizes)]
    else:
        x = np.concatenate([_x(40, 48, j) for j in range(3)])
        got = client.infer(model, x)["logits"]
        want = [client.infer(model, x[j: j + 1])["logits"][0] for j in range(3)]
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_classification(client):
    x = np.concatenate([_x(40, 48, 1), _x(40, 48, 2)])
    logits = client.infer("digits-gap", x)["logits"]
    top = client.infer("digits-gap", x, class_count=3)["logits"]
    assert top.shape == (2, 3)
    for row, strings in zip(logits, top):
        order = np.argsort(-row, kind="stable")[:3]
        want = [f"{row[i]:f}:{i}:{i}".encode() for i in order]  # digits' labels are "0".."9"
        assert list(strings) == want
    assert client.infer("digits-gap", x, class_count=50)["logits"].shape == (2, 10)  # k beyond L: all


def test_statistics(client):
    before = client.stats("digits-gap")
    client.infer("digits-gap", np.concatenate([_x(40, 48, 0)] * 2))
    with pytest.raises(InferenceServerException):
        client.infer("digits-gap", np.zeros((1, 3, 20, 20), np.float32))  # wrong channels: a failure
    after = client.stats("digits-gap")
    assert after["success"]["count"] == before["success"]["count"] + 1
    assert after["fail"]["count"] == before["fail"]["count"] + 1
    assert after["inference_count"] == before["inference_count"] + 2
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert after[k]["count"] == before[k]["count"] + 1
    infer_ns = after["compute_infer"]["ns"] - before["compute_infer"]["ns"]
    total_ns = after["success"]["ns"] - before["success"]["ns"]
    assert 0 < infer_ns <= total_ns


STOCKNET = """
import torch.nn as nn


def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d((2, 2)),
                         nn.Flatten(), nn.Linear(16, 3))
"""


def test_repository_register_load_unload(client, served, tmp_path, monkeypatch):
    from poolops_service.cli import main

    name = f"stocknet-{client.kind}"
    index = client.index()
    assert index["digits-spp"]["state"] == "READY" and name not in index
    # a model registered into the served repository while the server runs ...
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stocknet.py").write_text(textwrap.dedent(STOCKNET))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["export-torch", "stocknet:make", "--example", "1,3,32,32", "--check", "24x40",
                 "--register", name, "--root", str(served["zoo"])]) == 0
    assert client.index()[name]["state"] == "UNAVAILABLE"
    assert not client.c.is_model_ready(name)
    # ... is served after a load, with no restart
    client.c.load_model(name)
    assert client.index()[name]["state"] == "READY" and client.c.is_model_ready(name)
    x = np.random.default_rng(0).random((2, 3, 32, 40), dtype=np.float32)
    first = client.infer(name, x)["logits"]
    assert first.shape == (2, 3)

    # a broken folder (model.onnx no longer matches the card's sha256) never replaces it
    onnx_file = served["zoo"] / name / MODEL
    good = onnx_file.read_bytes()
    onnx_file.write_bytes(good + b"\0")
    with pytest.raises(InferenceServerException, match="sha256"):
        client.c.load_model(name)
    np.testing.assert_array_equal(client.infer(name, x)["logits"], first)
    assert client.index()[name]["state"] == "READY"
    onnx_file.write_bytes(good)

    client.c.unload_model(name)
    assert client.index()[name]["state"] == "UNAVAILABLE" and not client.c.is_model_ready(name)
    with pytest.raises(InferenceServerException, match="unloaded"):
        client.infer(name, x)
    assert client.c.is_server_ready()  # an unloaded model is not awaited
    client.c.load_model(name)
    np.testing.assert_array_equal(client.infer(name, x)["logits"], first)
    with pytest.raises(InferenceServerException, match="no model folder"):
        client.c.load_model("not-there")
    shutil.rmtree(served["zoo"] / name, ignore_errors=True)
