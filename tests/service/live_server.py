"""A real uvicorn server on 127.0.0.1 running ``create_app(settings)``, for the service tests.

Test modules import the fixtures they use (``from live_server import api, client``):
a second conftest.py would clash with tests/conftest.py as the module ``conftest``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from poolops_service.app import create_app
from poolops_service.config import Settings
from poolops_service.server import uvicorn_options

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"
COMMITTED = ["digits-spp", "digits-gap", "digits-fixed", "layout-spp", "layout-gap"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_zoo(dest: Path, names=COMMITTED) -> Path:
    """A registry with the committed models only (effnet-lite0-imagenet is built, not committed)."""
    for n in names:
        shutil.copytree(ZOO / n, dest / n)
    return dest


def server_settings(models_dir: Path, **kw) -> Settings:
    base = dict(models_dir=models_dir, build_missing=False, warmup_sizes=[(32, 32)], ui=False, threads=1)
    return Settings(**{**base, **kw})


@contextlib.contextmanager
def run_server(settings: Settings, wait_ready: bool = True, timeout: float = 120, customize=None):
    """Serve ``create_app(settings)`` with uvicorn in a thread, configured as ``poolops serve``
    configures it (``poolops_service.server``); yields the base URL. ``customize(app)`` may add
    routes first (e.g. one that fails as a bug would)."""
    app = create_app(settings)
    if customize is not None:
        customize(app)
    port = free_port()
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": port}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    if wait_ready:
        while httpx.get(url + "/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {httpx.get(url + '/readyz').json()}")
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def zoo_copy(tmp_path_factory) -> Path:
    return copy_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def api(zoo_copy) -> str:
    """Base URL of a ready server (batching on, no UI) shared by the API tests."""
    with run_server(server_settings(zoo_copy)) as url:
        yield url


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api, timeout=60) as c:
        yield c
