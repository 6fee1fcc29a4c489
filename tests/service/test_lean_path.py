"""The lean request path (issue 14): what each cut of per-request work keeps the same.

HTTP metrics recorded by ``HttpMetrics`` (the instrumentator's names, labels and route
templates), answers that skip pydantic still match their documented schemas."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from live_server import api, client, zoo_copy  # noqa: F401
from poolops_service.api.schemas import PredictResponse
from poolops_service.metrics import HANDLERS_CACHED, HttpMetrics
from images import digit_canvas, png


def _counts(text: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for m in re.finditer(r'^http_requests_total\{handler="([^"]*)",method="(\w+)",status="(\w+)"\} (\S+)$', text, re.M):
        out[m.group(1), m.group(2), m.group(3)] = float(m.group(4))
    return out


def test_http_metrics_by_route_template():
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: str):
        return {"item": item}

    reg = CollectorRegistry()
    app.add_middleware(HttpMetrics, registry=reg, excluded={"/metrics"})

    @app.get("/metrics")
    async def metrics():
        return {}

    with TestClient(app) as c:
        for i in range(3):
            assert c.get(f"/items/{i}").status_code == 200
        assert c.post("/items/1").status_code == 405
        assert c.get("/nowhere").status_code == 404
        c.get("/metrics")
    text = generate_latest(reg).decode()
    assert _counts(text) == {("/items/{item}", "GET", "2xx"): 3, ("/items/{item}", "POST", "4xx"): 1,
                             ("none", "GET", "4xx"): 1}
    assert 'http_request_duration_seconds_count{handler="/items/{item}",method="GET"} 3.0' in text
    assert "http_request_duration_highr_seconds_count 5.0" in text
    assert 'http_response_size_bytes_sum{handler="/items/{item}"} ' in text


def test_http_metrics_handler_cache_is_bounded():
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: str):
        return {}

    reg = CollectorRegistry()
    app.add_middleware(HttpMetrics, registry=reg)
    with TestClient(app) as c:
        c.get("/items/0")
        mw = app.middleware_stack
        while not isinstance(mw, HttpMetrics):
            mw = mw.app
        for i in range(HANDLERS_CACHED + 50):
            mw.handler({"type": "http", "method": "GET", "path": f"/items/{i}", "root_path": "", "app": app,
                        "headers": [], "query_string": b""})
    assert len(mw._handlers) == HANDLERS_CACHED


@pytest.mark.parametrize("top_k", [1, 5])
def test_predict_answer_matches_its_schema(client, top_k):
    r = client.post("/v1/models/digits-spp/predict", files=[("files", ("a.png", png(digit_canvas(40, 40)), "image/png"))],
                    data={"top_k": str(top_k)})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    answer = PredictResponse.model_validate_json(r.content)  # the documented response model
    assert len(answer.results) == 1 and len(answer.results[0].top) == top_k
    assert answer.results[0].input_size == [48, 48] and answer.results[0].original_size == [40, 40]
    spec = client.get("/openapi.json").json()["paths"]["/v1/models/{name}/predict"]["post"]
    assert spec["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"}


_B = b"xyz"
_CT = "multipart/form-data; boundary=xyz"


def _multipart(parts) -> bytes:
    out = b""
    for hdr, data in parts:
        out += b"--" + _B + b"\r\n" + hdr + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + _B + b"--\r\n"


_FILE = b'Content-Disposition: form-data; name="files"; filename="a.png"\r\nContent-Type: image/png'
_FIELD = b'Content-Disposition: form-data; name="top_k"'
_FORMS = {
    "files and a field": (_multipart([(_FILE, b"\x89PNG\r\n--xy data"), (_FILE.replace(b"a.png", b"b\xc3\xa9.png"), b""),
                                      (_FIELD, b"3")]), _CT),
    "other boundary": (_multipart([(_FILE, b"1")]), _CT.replace("xyz", "abc")),
    "cut short": (_multipart([(_FILE, b"1")])[:-10], _CT),
    "no boundary": (_multipart([(_FILE, b"1")]), "multipart/form-data"),
    "no name": (_multipart([(b'Content-Disposition: form-data; filename="a"', b"1")]), _CT),
    "garbage": (b"garbage", _CT),
    "empty": (b"", _CT),
    "undecodable field": (_multipart([(_FIELD, b"\xff\xfe")]), _CT),
    "too many fields": (_multipart([(_FIELD, b"v")] * 70), _CT),
    "too many files": (_multipart([(_FILE, b"v")] * 40), _CT),
    "field too large": (_multipart([(_FIELD, b"v" * ((1 << 20) + 1))]), _CT),
    "latin-1": (_multipart([(_FILE.replace(b"a.png", b"\xe9.png"), b"1")]), _CT + "; charset=latin-1"),
    "unknown charset": (_multipart([(_FILE, b"1")]), _CT + "; charset=nonsense"),
}


async def _items(form) -> list:
    """(name, (filename, bytes, headers) or text) of each field."""
    out = []
    for k, v in form.multi_items():
        if isinstance(v, str):
            out.append((k, v))
        else:
            data = v.data if hasattr(v, "data") else await v.read()
            out.append((k, (v.filename, data, list(v.headers.raw))))
    return out


@pytest.mark.parametrize("case", list(_FORMS))
def test_multipart_parsed_as_starlette_parses_it(case):
    """bodies.parse_form (one python-multipart pass over the whole body, parts in memory)
    gives the fields, files, headers and error messages of Starlette's request.form()."""
    import asyncio

    from starlette.requests import Request

    from poolops_service.api import bodies

    body, ct = _FORMS[case]

    async def starlette_form():
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        r = Request({"type": "http", "method": "POST", "headers": [(b"content-type", ct.encode())], "path": "/",
                     "query_string": b""}, receive)
        try:
            return await _items(await r.form(max_files=33, max_fields=64))
        except Exception as e:  # noqa: BLE001 - Starlette's 400
            return ("error", getattr(e, "detail", None) or e.message)

    async def ours():
        try:
            return await _items(bodies.parse_form(body, ct, 33, 64))
        except bodies._FormError as e:
            return ("error", str(e))

    assert asyncio.run(ours()) == asyncio.run(starlette_form())
