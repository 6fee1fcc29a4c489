"""The app as a process: no torch in the serving process, readiness only after warm-up,
start refused when CUDA is required and missing, OpenAPI, metrics, `poolops serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import onnxruntime as ort
import pytest

from live_server import api, client, free_port, run_server, server_settings, zoo_copy  # noqa: F401
from poolops_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_serving_process_never_imports_torch(zoo_copy):
    """Start the full app (UI included) in a fresh interpreter, serve requests, check sys.modules."""
    code = textwrap.dedent(f"""
        import sys, httpx
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from live_server import run_server, server_settings
        from pathlib import Path
        s = server_settings(Path({str(zoo_copy)!r}), ui=True)
        with run_server(s) as url:
            assert httpx.post(url + "/v1/ops/spp", json={{"input": [[1.0, 2.0], [3.0, 4.0]]}}).status_code == 200
            assert httpx.get(url + "/ui/").status_code == 200
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_readyz_is_503_with_reasons_until_warmed_up(zoo_copy):
    # many large warm-up sizes make the warm-up slow enough to be seen
    s = server_settings(zoo_copy, warmup_sizes=[(512, 512)] * 6)
    with run_server(s, wait_ready=False) as url:
        r = httpx.get(url + "/readyz")
        assert httpx.get(url + "/healthz").status_code == 200
        assert r.status_code == 503 and r.json()["reasons"][0].startswith("starting"), r.json()
        assert r.headers["retry-after"]
        deadline = time.monotonic() + 120
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(url + "/readyz").json()["ready"] is True


def test_broken_model_keeps_readyz_503_and_others_serve(tmp_path):
    from live_server import copy_zoo

    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap", "layout-gap"])
    (zoo / "layout-gap" / "model.onnx").write_bytes(b"garbage")
    with run_server(server_settings(zoo), wait_ready=False) as url:
        deadline = time.monotonic() + 60
        while "starting" in " ".join(httpx.get(url + "/readyz").json()["reasons"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = httpx.get(url + "/readyz")
        assert r.status_code == 503 and "layout-gap" in r.json()["reasons"][0] and "sha256" in r.json()["reasons"][0]
        assert httpx.get(url + "/v1/models/digits-gap").json()["available"] is True
        r = httpx.post(url + "/v1/models/layout-gap/predict", json={"images": [{"b64": "AA=="}]})
        assert r.status_code == 503 and "sha256" in r.json()["error"]["message"]


def test_ready_when_any_serves_the_good_models_of_a_pod_with_a_broken_one(tmp_path):
    from live_server import copy_zoo

    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap", "layout-gap"])
    (zoo / "layout-gap" / "model.onnx").write_bytes(b"garbage")
    with run_server(server_settings(zoo, ready_when="any"), wait_ready=False) as url:
        deadline = time.monotonic() + 60
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(url + "/readyz").json()
            time.sleep(0.05)
        body = httpx.get(url + "/readyz").json()
        assert body["ready"] and "layout-gap" in body["reasons"][0]  # still said, not hidden
        assert httpx.get(url + "/v2/health/ready").status_code == 200
        assert httpx.get(url + "/v2/models/layout-gap/ready").status_code == 503


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
def test_start_refused_when_cuda_required_and_missing(tmp_path):
    from poolops_service.app import create_app

    with pytest.raises(RuntimeError, match="POOLOPS_DEVICE=cuda"):
        create_app(Settings(models_dir=tmp_path, device="cuda", build_missing=False, ui=False))


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POOLOPS_MAX_BODY_BYTES", "12345")
    monkeypatch.setenv("POOLOPS_WARMUP_SIZES", "[[10, 20]]")
    monkeypatch.setenv("POOLOPS_MODELS_DIR", str(tmp_path))
    s = Settings()
    assert s.max_body_bytes == 12345 and s.warmup_sizes == [(10, 20)] and s.models_dir == tmp_path


def test_info_openapi_and_metrics(client):
    info = client.get("/v1/info").json()
    assert info["engine"]["providers_in_use"] == ["CPUExecutionProvider"] and info["engine"]["device"] == "cpu"
    spec = client.get("/openapi.json").json()
    for path in ["/healthz", "/readyz", "/metrics", "/v1/info", "/v1/ops", "/v1/ops/{name}", "/v1/models",
                 "/v1/models/{name}", "/v1/models/{name}/predict", "/v1/models/{name}/embed", "/v2/health/live",
                 "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer"]:
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/ops/{name}"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    client.post("/v1/ops/max", json={"input": [[1.0, 2.0]], "params": {"kernel": 1}})
    text = client.get("/metrics").text
    for name in ["http_requests_total", "http_request_duration_seconds", "poolops_inference_seconds",
                 "poolops_batch_size", "poolops_queue_depth", "poolops_ready 1.0", 'poolops_sessions{provider="CPU']:
        assert name in text, name
    assert 'kind="op",name="max",provider="CPUExecutionProvider"' in text


def test_poolops_serve_and_graceful_sigterm(zoo_copy):
    """`poolops serve` starts; on SIGTERM requests in flight finish before it exits."""
    port = free_port()
    env = {**os.environ, "POOLOPS_MODELS_DIR": str(zoo_copy), "POOLOPS_BUILD_MISSING": "false",
           "POOLOPS_WARMUP_SIZES": "[]", "POOLOPS_REQUEST_TIMEOUT_S": "60",
           # every predict waits in the batcher: certainly in flight when SIGTERM comes
           "POOLOPS_BATCH_WAIT_MS": "6000", "POOLOPS_BATCH_MAX_SIZE": "64"}
    proc = subprocess.Popen([sys.executable, "-m", "poolops_service.cli", "serve", "--port", str(port), "--no-ui",
                             "--log-level", "warning"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        import concurrent.futures as cf

        from images import digit_canvas, png

        files = [("files", ("a.png", png(digit_canvas()), "image/png"))]
        with cf.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, url + "/v1/models/digits-spp/predict", files=files, timeout=120)
                       for _ in range(8)]
            while 'poolops_queue_depth{model="digits-spp"} 8.0' not in httpx.get(url + "/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)  # until all eight wait in the batcher
            proc.send_signal(signal.SIGTERM)
            codes = [f.result().status_code for f in futures]
        assert codes == [200] * 8, codes
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(url + "/healthz")
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
    finally:
        if proc.poll() is None:
            proc.kill()


def test_behind_a_reverse_proxy_prefix(tmp_path):
    """POOLOPS_ROOT_PATH: a proxy strips /pp; the API, OpenAPI and the UI's own URLs carry it."""
    from live_server import copy_zoo

    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap"])
    with run_server(server_settings(zoo, ui=True, root_path="/pp")) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/openapi.json").json()["servers"] == [{"url": "/pp"}]
        assert httpx.get(url + "/ui/config").json()["root"].endswith("/pp/ui")
