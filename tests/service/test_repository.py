"""The model repository on a real server: the polling mode (POOLOPS_REPOSITORY_POLL_S) loads
a folder registered while the server runs and reloads it when it changes, never swapping
in a broken folder; the HTTP repository routes need the key when one is set and answer
bad requests with a clear 4xx."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import onnx
import pytest

from live_server import copy_zoo, run_server, server_settings
from poolops_models.cards import CARD, MODEL, save_model

X = {"inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32", "data": [0.5] * 256}],
     "outputs": [{"name": "logits", "parameters": {"classification": 1}}]}


def register(zoo, name: str, labels: list[str]) -> None:
    """``save_model`` (what ``poolops train`` and ``export-torch --register`` call): digits-gap's
    graph under another name and labels."""
    card = json.loads((zoo / "digits-gap" / CARD).read_text())
    card = {**card, "name": name, "labels": labels}
    card.pop("sha256")
    save_model(zoo, onnx.load(str(zoo / "digits-gap" / MODEL)), card)


def wait_for(cond, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("not within the time")
        time.sleep(0.1)


def top_label(c: httpx.Client, name: str) -> str:
    r = c.post(f"/v2/models/{name}/infer", json=X)
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"][0].split(":", 2)[2]


def test_polling_loads_new_and_changed_folders_and_never_a_broken_one(tmp_path):
    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap"])
    with run_server(server_settings(zoo, repository_poll_s=0.2)) as url, httpx.Client(base_url=url, timeout=60) as c:
        register(zoo, "polled", [f"a{i}" for i in range(10)])
        wait_for(lambda: c.get("/v2/models/polled/ready").status_code == 200)
        assert top_label(c, "polled").startswith("a")

        # broken: the bytes no longer match the card's sha256 -> the working model stays
        model = zoo / "polled" / MODEL
        model.write_bytes(model.read_bytes() + b"\0")
        time.sleep(1.0)  # several polls
        assert top_label(c, "polled").startswith("a")
        index = {m["name"]: m for m in c.post("/v2/repository/index").json()}
        assert index["polled"]["state"] == "READY"

        # changed and valid again (new labels) -> reloaded
        register(zoo, "polled", [f"b{i}" for i in range(10)])
        wait_for(lambda: top_label(c, "polled").startswith("b"))
        assert c.get("/readyz").status_code == 200


def test_repository_routes_need_the_key_and_refuse_bad_requests_clearly(tmp_path):
    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap"])
    key = {"Authorization": "Bearer k1"}
    with run_server(server_settings(zoo, api_key="k1")) as url, httpx.Client(base_url=url, timeout=60) as c:
        for path in ("/v2/repository/index", "/v2/repository/models/digits-gap/load",
                     "/v2/repository/models/digits-gap/unload"):
            r = c.post(path)
            assert r.status_code == 401 and "POOLOPS_API_KEY" in r.json()["error"]
        assert c.get("/v2/models/digits-gap/stats").status_code == 401
        for path, body, status, says in [
            ("/v2/repository/index", b'{"ready": 1}', 422, "ready"),
            ("/v2/repository/index", b"[", 422, "json"),
            ("/v2/repository/models/bad%20name/load", b"", 422, "folder name"),
            ("/v2/repository/models/nope/load", b"", 404, "no model folder"),
            ("/v2/repository/models/nope/unload", b"", 404, "unknown model"),
            ("/v2/repository/models/digits-gap/load", b'{"parameters": {"config": "{}"}}', 422, "not supported"),
            ("/v2/repository/models/digits-gap/load", b"x" * 70_000, 422, "small JSON"),
        ]:
            r = c.post(path, content=body, headers={**key, "Content-Type": "application/json"})
            assert r.status_code == status and says.lower() in r.json()["error"].lower(), (path, r.status_code, r.text)
        assert c.get("/v2/models/nope/stats", headers=key).status_code == 404
        assert c.get("/v2/models/digits-gap/versions/2/stats", headers=key).status_code == 404
        r = c.get("/v2/models/stats", headers=key)
        assert [m["name"] for m in r.json()["model_stats"]] == ["digits-gap"]
        assert c.post("/v2/repository/models/digits-gap/unload", headers=key).status_code == 200
        assert c.get("/readyz").status_code == 200  # what was unloaded on request is not awaited
        assert c.post("/v2/models/digits-gap/infer", json=X, headers=key).status_code == 404
        assert c.post("/v2/repository/models/digits-gap/load", headers=key).status_code == 200
        r = c.post("/v2/models/digits-gap/infer", json=X, headers=key)
        assert r.status_code == 200 and r.json()["outputs"][0]["datatype"] == "BYTES"
        assert np.asarray(r.json()["outputs"][0]["shape"]).tolist() == [1, 1]
