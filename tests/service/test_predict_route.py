"""The predict route's direct handler (``DirectRoute``): called without FastAPI's dependency
solving, with its OpenAPI entry, errors and answers as an ordinary route's."""

from __future__ import annotations

import fastapi.routing
import httpx
import pytest
from fastapi import Request
from fastapi.responses import Response

from live_server import run_server, server_settings, zoo_copy  # noqa: F401
from images import digit_canvas, png
from poolops_service.api.routes.models import DirectRoute


def test_predict_skips_dependency_solving_and_answers_as_before(zoo_copy, monkeypatch):  # noqa: F811
    calls = []
    solve = fastapi.routing.solve_dependencies

    async def counted(*a, **kw):
        if kw["request"].url.path.startswith("/v1/models/"):
            calls.append(kw["request"].url.path)
        return await solve(*a, **kw)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    files = [("files", ("a.png", png(digit_canvas(40, 40)), "image/png"))]
    with run_server(server_settings(zoo_copy)) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/models/digits-spp/predict", files=files, data={"top_k": "3"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "digits-spp" and len(body["results"][0]["top"]) == 3
        assert body["results"][0]["original_size"] == [40, 40]
        assert calls == []  # the direct handler
        assert c.post("/v1/models/digits-spp/embed", files=files).status_code == 200
        assert calls == ["/v1/models/digits-spp/embed"]  # an ordinary route: counted
        calls.clear()
        missing = c.post("/v1/models/nope/predict", files=files)
        assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["error"]["message"]
        bad = c.post("/v1/models/digits-spp/predict", files=files, data={"top_k": "0"})
        assert bad.status_code == 422 and "top_k must be within 1..1000" in bad.json()["error"]["message"]
        assert c.get("/v1/models/digits-spp/predict").status_code == 405
        doc = c.get("/openapi.json").json()["paths"]["/v1/models/{name}/predict"]
        assert list(doc) == ["post"] and doc["post"]["operationId"] == "predict_v1_models__name__predict_post"
        assert calls == []


def test_direct_route_refuses_endpoints_it_would_shortchange():
    async def extra(name: str, request: Request, top: int = 1) -> Response:
        return Response()

    async def good(name: str, request: Request) -> Response:
        return Response()

    with pytest.raises(ValueError, match="takes an endpoint"):
        DirectRoute("/{name}/x", extra, methods=["POST"])
    with pytest.raises(ValueError, match="no dependencies"):
        DirectRoute("/{name}/x", good, methods=["POST"], dependencies=[fastapi.Depends(lambda: 1)])
    assert DirectRoute("/{name}/x", good, methods=["POST"]).path == "/{name}/x"
