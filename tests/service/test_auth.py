"""API keys (POOLOPS_API_KEY) on a real server: every route but health needs
``Authorization: Bearer <key>`` (the REST API, /v2 with tritonclient, /docs, the OpenAPI
document, /metrics when it is not public, and the Gradio UI's routes), answered 401 in
the service's error format; health stays open; unset keys leave the server open."""

from __future__ import annotations

import io
import logging

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import copy_zoo, run_server, server_settings
from PIL import Image

from poolops_service.api.auth import Keys
from poolops_service.app import create_app

KEYS = " key-one , key-two,, "  # stripped; the empty ones ignored
ONE = {"Authorization": "Bearer key-one"}
TWO = {"Authorization": "bearer key-two"}  # the scheme is case-insensitive


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return copy_zoo(tmp_path_factory.mktemp("auth-zoo"), ["digits-spp"])


@pytest.fixture(scope="module")
def locked(zoo, tmp_path_factory):
    s = server_settings(zoo, api_key=KEYS, ui=True, warmup_sizes=[], gradio_temp_dir=tmp_path_factory.mktemp("gr"))
    with run_server(s) as url:
        yield url


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def assert_unauthorized(r: httpx.Response, v2: bool = False) -> None:
    assert r.status_code == 401, (r.request.url, r.status_code, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    err = r.json()["error"]
    message = err if v2 else err["message"]
    if not v2:
        assert err["code"] == "unauthorized"
    assert "Authorization: Bearer" in message and "POOLOPS_API_KEY" in message


def test_keys_parse_and_compare():
    keys = Keys(KEYS)
    assert keys.check("key-one") and keys.check(b"key-two")
    assert not keys.check("") and not keys.check(" key-one") and not keys.check("key") and not keys.check(None)
    assert not Keys(" , ") and not Keys(None).check("x")


@pytest.mark.parametrize("path", ["/v1/info", "/v1/ops", "/v1/models", "/docs", "/openapi.json", "/redoc"])
def test_api_routes_need_a_key(locked, path):
    assert_unauthorized(httpx.get(locked + path))
    assert_unauthorized(httpx.get(locked + path, headers={"Authorization": "Bearer wrong"}))
    assert_unauthorized(httpx.get(locked + path, headers={"Authorization": "Basic key-one"}))
    assert httpx.get(locked + path, headers=ONE).status_code == 200
    assert httpx.get(locked + path, headers=TWO).status_code == 200


def test_posts_are_refused_before_any_work(locked):
    body = {"input": [[1, 2], [3, 4]], "params": {"kernel": 2}}
    assert_unauthorized(httpx.post(locked + "/v1/ops/max", json=body))
    files = [("files", ("d.png", png(np.zeros((20, 20), np.uint8)), "image/png"))]
    assert_unauthorized(httpx.post(locked + "/v1/models/digits-spp/predict", files=files))
    # a 404 path needs a key too: nothing about the server is told without one
    assert_unauthorized(httpx.get(locked + "/v1/nope"))
    r = httpx.post(locked + "/v1/ops/max", json=body, headers=ONE)
    assert r.status_code == 200, r.text


def test_health_is_open_and_metrics_public_by_default(locked):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert httpx.get(locked + path).status_code == 200, path


def test_v2_needs_a_key_in_its_own_error_format_and_tritonclient_sends_it(locked):
    for path in ("/v2", "/v2/models/digits-spp", "/v2/models/digits-spp/ready"):
        assert_unauthorized(httpx.get(locked + path), v2=True)
    infer = {"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
    assert_unauthorized(httpx.post(locked + "/v2/models/digits-spp/infer", json=infer), v2=True)

    tc = triton.InferenceServerClient(locked.removeprefix("http://"))
    try:
        assert tc.is_server_live()  # health: no key
        with pytest.raises(triton.InferenceServerException, match="API key"):
            tc.get_model_metadata("digits-spp")
        assert tc.get_model_metadata("digits-spp", headers=ONE)["name"] == "digits-spp"
        x = np.zeros((1, 1, 16, 16), np.float32)  # the card's smallest size
        inp = triton.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        res = tc.infer("digits-spp", [inp], headers=TWO)
        assert res.as_numpy("logits").shape == (1, 10)
    finally:
        tc.close()


def test_openapi_declares_the_bearer_scheme(locked):
    doc = httpx.get(locked + "/openapi.json", headers=ONE).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of the keys in POOLOPS_API_KEY"}
    assert doc["security"] == [{"bearer": []}]
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert doc["paths"][path]["get"]["security"] == [], path
    op = doc["paths"]["/v1/ops/{name}"]["post"]
    assert "security" not in op and "401" in op["responses"]
    v2 = doc["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["401"]
    assert v2["content"]["application/json"]["schema"]["properties"]["error"]["type"] == "string"


def test_ui_routes_refuse_anonymous_clients(locked):
    """The login page is open; Gradio's config, API, queue, heartbeat and upload routes
    need its session cookie (or a key), and an anonymous upload stores nothing."""
    page = httpx.get(locked + "/ui/")
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
    for path in ("/ui/config", "/ui/gradio_api/info", "/ui/gradio_api/heartbeat/abc", "/ui/gradio_api/queue/data",
                 "/ui/gradio_api/file=x.png", "/ui/monitoring"):
        r = httpx.get(locked + path, params={"session_hash": "abc"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    join = {"data": [], "fn_index": 0, "session_hash": "abc", "event_data": None}
    for path, kw in [("/ui/gradio_api/queue/join", {"json": join}), ("/ui/gradio_api/cancel", {"json": {}}),
                     ("/ui/gradio_api/upload", {"files": [("files", ("a.png", png(np.zeros((8, 8), np.uint8))))]})]:
        r = httpx.post(locked + path, **kw)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (path, r.text)


def test_ui_login_with_a_key_gives_gradio_session(locked):
    with httpx.Client(base_url=locked) as c:
        assert c.post("/ui/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert c.get("/ui/config").status_code == 401
        assert c.post("/ui/login", data={"username": "anyone", "password": "key-two"}).json() == {"success": True}
        assert c.get("/ui/config").status_code == 200
        r = c.post("/ui/gradio_api/upload", files=[("files", ("a.png", png(np.zeros((8, 8), np.uint8)), "image/png"))])
        assert r.status_code == 200 and len(r.json()) == 1
        # the REST API is not opened by the UI's session: it takes keys only
        assert_unauthorized(c.get("/v1/models"))
    # a key alone passes the UI's door, but Gradio's own routes still want its login
    r = httpx.get(locked + "/ui/config", headers=ONE)
    assert r.status_code == 401 and "Not authenticated" in r.text


def test_metrics_locked_when_not_public(zoo):
    with run_server(server_settings(zoo, api_key="k", metrics_public=False, warmup_sizes=[])) as url:
        assert_unauthorized(httpx.get(url + "/metrics"))
        assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer k"}).status_code == 200
        assert httpx.get(url + "/healthz").status_code == 200


def test_behind_a_proxy_prefix(zoo):
    with run_server(server_settings(zoo, api_key="k", root_path="/pp", warmup_sizes=[])) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/v2/health/ready").status_code == 200
        assert_unauthorized(httpx.get(url + "/v1/models"))
        assert_unauthorized(httpx.get(url + "/v2/models/digits-spp"), v2=True)
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200


def test_unset_keys_leave_the_server_open_and_warn_beyond_loopback(zoo, caplog):
    with run_server(server_settings(zoo, warmup_sizes=[])) as url:
        assert httpx.get(url + "/v1/models").status_code == 200
        doc = httpx.get(url + "/openapi.json").json()
        assert "security" not in doc and "securitySchemes" not in doc.get("components", {})
    with caplog.at_level(logging.WARNING, logger="poolops.service"):
        create_app(server_settings(zoo, host="127.0.0.1")).state.engine.close()
        assert not [r for r in caplog.records if "POOLOPS_API_KEY" in r.getMessage()]
        create_app(server_settings(zoo, host="0.0.0.0")).state.engine.close()
    assert [r for r in caplog.records if "POOLOPS_API_KEY is not set" in r.getMessage()]
