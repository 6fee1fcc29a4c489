"""Hostile clients against a real server: each case's answers, time, the server's memory
(read from /proc) and a normal client's latency while the attack runs.

``poolops bench hostile`` prints the table (docs/hostile.md holds a run);
``tests/service/test_hostile.py`` runs the same cases and asserts their bounds.

The server runs as its own process (``python -m poolops_service.cli serve``), so its resident
memory is its own. While a case runs, a prober sends a small op request, a small
``digits-spp`` prediction and ``/healthz`` in turn and records their latency; a sampler
reads the server's ``VmRSS`` every 10 ms.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx
import numpy as np
from PIL import Image

MB = 1024 * 1024
BUDGET_MB = 512  # no request may raise resident memory more than this above steady state
COMMITTED = ["digits-spp", "digits-gap", "digits-fixed", "layout-spp", "layout-gap"]


# ---------------------------------------------------------------- payloads


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def b64_tensor(a: np.ndarray) -> dict:
    return {"b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode(), "shape": list(a.shape),
            "dtype": str(a.dtype)}


def digit_png(h: int = 32, w: int = 32) -> bytes:
    a = np.zeros((h, w), np.uint8)
    a[h // 5: 4 * h // 5, w // 2 - 2: w // 2 + 2] = 255
    return png(a)


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``poolops serve`` on 127.0.0.1 in a child process, with ``POOLOPS_*`` overrides."""

    def __init__(self, models_dir: Path, **settings: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "POOLOPS_MODELS_DIR": str(models_dir), "POOLOPS_BUILD_MISSING": "false",
               "POOLOPS_UI": "false", "POOLOPS_PORT": str(self.port), "POOLOPS_HOST": "127.0.0.1",
               "POOLOPS_WARMUP_SIZES": "[[32, 32]]"}
        env.update({f"POOLOPS_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolops_service.cli", "serve", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def server(full: bool = False, **settings: object) -> Iterator[ServerProcess]:
    """A ready server over a copy of the committed models; ``full``: as deployed, with the UI
    and ``effnet-lite0-imagenet`` (when built) too."""
    zoo = Path(__file__).resolve().parents[1] / "models" / "zoo"
    names = COMMITTED + (["effnet-lite0-imagenet"] if full and (zoo / "effnet-lite0-imagenet").is_dir() else [])
    if full:
        settings = {"ui": "true", **settings}
    with tempfile.TemporaryDirectory(prefix="poolops-hostile-") as d:
        for n in names:
            shutil.copytree(zoo / n, Path(d) / n)
        srv = ServerProcess(Path(d), **settings)
        try:
            srv.wait_ready()
            yield srv
        finally:
            srv.stop()


# ---------------------------------------------------------------- observers


class MemorySampler(threading.Thread):
    """The server's peak VmRSS while it runs (every 10 ms)."""

    def __init__(self, srv: ServerProcess):
        super().__init__(daemon=True)
        self.srv, self.peak, self._halt = srv, srv.rss_mb(), threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.srv.rss_mb())
            except (OSError, RuntimeError):
                return
            time.sleep(0.01)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak


class Prober(threading.Thread):
    """A normal client: a small op request, a small prediction and /healthz in turn, with latencies."""

    def __init__(self, url: str, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.url, self.every = url, every_s
        self.latencies: list[float] = []
        self.kinds: list[str] = []
        self.failures: list[str] = []
        self._halt = threading.Event()
        self._digit = digit_png()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            i = 0
            while not self._halt.is_set():
                t0 = time.perf_counter()
                kind = ("op", "predict", "healthz")[i % 3]
                try:
                    if kind == "op":
                        r = c.post("/v1/ops/max", json={"input": [[1, 3], [2, 2]], "params": {"kernel": 2}})
                    elif kind == "predict":
                        r = c.post("/v1/models/digits-spp/predict", files=[("files", ("d.png", self._digit, "image/png"))])
                    else:
                        r = c.get("/healthz")
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__}: {e}")
                self.latencies.append(time.perf_counter() - t0)
                self.kinds.append(kind)
                i += 1
                self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---------------------------------------------------------------- cases


@dataclass
class Answer:
    status: int
    message: str
    seconds: float


@dataclass
class Case:
    """``send(client) -> httpx.Response`` sent ``copies`` times at once; the answers must
    have a status in ``expect`` and come within ``max_seconds``."""

    name: str
    send: Callable[[httpx.Client], httpx.Response]
    expect: frozenset[int]
    copies: int = 1
    max_seconds: float = 10.0
    note: str = ""
    probe_bound: bool = True  # a normal request must be answered within 1 s meanwhile
    min_ok: int = 0  # answers that must be 200 (where 503 is allowed: some must get through)


def _post_json(path: str, body: dict, **kw) -> Callable[[httpx.Client], httpx.Response]:
    data = json.dumps(body).encode()
    return lambda c: c.post(path, content=data, headers={"content-type": "application/json", **kw.get("headers", {})})


def _post_files(path: str, files: list[tuple[str, bytes]], data: dict | None = None, headers: dict | None = None):
    parts = [("files" if n is None else n, (f"{i}.png", b, "image/png")) for i, (n, b) in enumerate(files)]
    return lambda c: c.post(path, files=parts, data=data or {}, headers=headers or {})


def _v2_binary(model: str, x: np.ndarray) -> Callable[[httpx.Client], httpx.Response]:
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    body = head + x.astype("<f4").tobytes()
    return lambda c: c.post(f"/v2/models/{model}/infer", content=body,
                            headers={"inference-header-content-length": str(len(head)),
                                     "content-type": "application/octet-stream"})


def cases(full: bool = False) -> list[Case]:
    """Every attack: oversized, slow, malformed and costly requests against each route
    (``full``: the server has effnet-lite0-imagenet)."""
    ok, refused = frozenset({200}), frozenset({413, 422})
    big_png = png(np.zeros((4096, 4096), np.uint8))  # ~16 KB that decodes to 16.7 M pixels
    noise_4k = png(np.random.default_rng(3).integers(0, 4, (4096, 4096), dtype=np.uint8) * 64)  # ~4 MB
    rgb_2k = png(np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8) // 64 * 64)
    x512 = np.random.default_rng(1).random((1, 1, 512, 512), dtype=np.float32)
    boxes = np.concatenate([np.zeros((500, 1)), np.tile([[0, 0, 511, 511]], (500, 1))], 1).astype(np.float32)
    nested = np.round(np.random.default_rng(2).random((2000, 2000)), 2).tolist()  # ~24 MB of JSON
    photo_1k = png(np.random.default_rng(4).integers(0, 255, (1024, 1024, 3), dtype=np.uint8))
    nested_ok = nested[:130]  # 260,000 numbers: within POOLOPS_MAX_JSON_ELEMENTS
    heavy = [
        _post_files("/v1/models/digits-spp/predict", [(None, digit_png(1024, 1024))] * 32),
        _post_files("/v1/ops/avg", [("image", noise_4k)], {"params": '{"kernel": 3, "stride": 1, "padding": 1}'},
                    headers={"accept": "application/x-npy"}),
        _post_files("/v1/ops/adaptive_max", [("image", noise_4k)], {"params": '{"output_size": [300, 300]}'}),
        _v2_binary("digits-spp", np.zeros((7, 1, 1024, 1024), np.float32)),
        _post_files("/v1/models/layout-spp/predict", [(None, digit_png(1024, 1024))] * 32),
        _post_files("/v1/ops/lp", [("image", noise_4k)], {"params": '{"kernel": 2}'},
                    headers={"accept": "application/x-npy"}),
    ] + ([_post_files("/v1/models/effnet-lite0-imagenet/predict", [(None, photo_1k)] * 8)] if full else [])
    return [
        Case("bilinear, 8192 channels (44 KB request)", _post_json(
            "/v1/ops/bilinear", {"input": b64_tensor(np.zeros((1, 8192, 1, 1), np.float32))}), refused),
        Case("max kernel 1 + indices + backward, 2048x2048 RGB PNG", _post_files(
            "/v1/ops/max", [("image", rgb_2k)], {"params": '{"kernel": 1}', "return_indices": "true",
                                                 "backward": "true", "color": "rgb"}), refused),
        Case("the same as .npy", _post_files(
            "/v1/ops/max", [("image", rgb_2k)], {"params": '{"kernel": 1}', "return_indices": "true",
                                                 "backward": "true", "color": "rgb"},
            headers={"accept": "application/x-npy"}), refused),
        Case("adaptive_max output 4096x4096 on 1x1", _post_json(
            "/v1/ops/adaptive_max", {"input": [[1]], "params": {"output_size": [4096, 4096]}}), refused),
        Case("adaptive_max output 100000x100000", _post_json(
            "/v1/ops/adaptive_max", {"input": [[1]], "params": {"output_size": [100000, 100000]}}), refused),
        Case("spp level 4096 on 1x1", _post_json("/v1/ops/spp", {"input": [[1]], "params": {"levels": [4096]}}),
             refused),
        Case("spp level 100000", _post_json("/v1/ops/spp", {"input": [[1]], "params": {"levels": [100000]}}),
             refused),
        Case("deform_roi_pool, 500 boxes on 1x1x512x512 (1.6 MB)", _post_json(
            "/v1/ops/deform_roi_pool", {"input": b64_tensor(x512), "inputs": {
                "boxes": b64_tensor(boxes), "offsets": b64_tensor(np.zeros((500, 2, 7, 7), np.float32))}}),
             ok | refused, max_seconds=15),
        Case("max kernel 30001 padding 15000 on [[1]], 6 at once", _post_json(
            "/v1/ops/max", {"input": [[1]], "params": {"kernel": 30001, "padding": 15000}}), ok | refused, copies=6,
             max_seconds=2),
        Case("stochastic train kernel 96, 4 seeds at once", lambda c, n=iter(range(10**6)): c.post(
            "/v1/ops/stochastic", json={"input": b64_tensor(np.ones((1, 1, 192, 192), np.float32)),
                                        "params": {"kernel": 96, "mode": "train", "seed": next(n)}}),
             ok, copies=4, max_seconds=10),
        # the card's size policy scales it to the model's scale: decoded under the memory budget
        Case("4096x4096 PNG (16 KB) to digits-spp, 4 at once", _post_files(
            "/v1/models/digits-spp/predict", [(None, big_png)]), ok | {503}, copies=4, max_seconds=10, min_ok=1),
        Case("4096x4096 PNG (16 KB) to digits-spp, resize=none", _post_files(
            "/v1/models/digits-spp/predict", [(None, big_png)], {"resize": "none"}), refused, max_seconds=2),
        Case("4096x4096 PNG to max (JSON answer)", _post_files(
            "/v1/ops/max", [("image", big_png)], {"params": '{"kernel": 2}'}), refused, max_seconds=10),
        Case("16 images 1024x8 + 16 of 8x1024 to digits-spp", _post_files(
            "/v1/models/digits-spp/predict", [(None, digit_png(1024, 8))] * 16 + [(None, digit_png(8, 1024))] * 16),
             ok | refused, max_seconds=20),
        Case("32 images of 1024x1024 to digits-spp", _post_files(
            "/v1/models/digits-spp/predict", [(None, digit_png(1024, 1024))] * 32), ok | refused, max_seconds=30),
        Case("/v2 binary x [7, 1, 1024, 1024] to digits-spp (29 MB)", _v2_binary(
            "digits-spp", np.zeros((7, 1, 1024, 1024), np.float32)), ok | refused, max_seconds=30),
        Case("JSON nested list of 4 M numbers (24 MB)", _post_json(
            "/v1/ops/global_max", {"input": nested}), refused, max_seconds=2),
        Case("JSON nested list of 260,000 numbers (1.8 MB), 4 at once", _post_json(
            "/v1/ops/global_max", {"input": nested_ok}), ok, copies=4, max_seconds=5),
        Case("/v2 JSON data of 4 M numbers (24 MB)", _post_json("/v2/models/digits-spp/infer", {"inputs": [
            {"name": "x", "shape": [1, 1, 2000, 2000], "datatype": "FP32", "data": nested}]}), refused, max_seconds=2),
        Case("avg 3x3 stride 1 on a 4096x4096 PNG, .npy answer (64 MB), 2 at once", _post_files(
            "/v1/ops/avg", [("image", noise_4k)], {"params": '{"kernel": 3, "stride": 1, "padding": 1}'},
            headers={"accept": "application/x-npy"}), ok | {503}, copies=2, max_seconds=20, min_ok=1,
             note="both together may pass POOLOPS_MAX_INFLIGHT_BYTES (decoded input and answer: 128 MB each)"),
        Case("adaptive_max 300x300 + indices on a 4096x4096 PNG, 2 at once", _post_files(
            "/v1/ops/adaptive_max", [("image", noise_4k)], {"params": '{"output_size": [300, 300]}',
                                                            "return_indices": "true"}), ok | refused, copies=2,
             max_seconds=20),
        Case("40 uploads of 24 MB at once (base64 tensors, .npy answers)", _post_json(
            "/v1/ops/max", {"input": b64_tensor(np.ones((1, 1, 2400, 2500), np.float32))},
            headers={"accept": "application/x-npy"}), ok | {503}, copies=40, max_seconds=30, min_ok=1,
             note="past POOLOPS_MAX_INFLIGHT_BYTES: 503 and Retry-After (overload), never the memory"),
        Case("64 distinct op graphs (kernels 1..64), 8 at once", lambda c, n=iter(range(10**6)): c.post(
            "/v1/ops/avg", json={"input": np.ones((64, 64)).tolist(), "params": {"kernel": next(n) % 64 + 1}}),
             ok, copies=8, max_seconds=20),
        Case("the worst of the above together: 6 heavy requests at once (deployment sizing)",
             lambda c, it=itertools.count(): heavy[next(it) % len(heavy)](c), ok | refused | {503},
             copies=len(heavy), max_seconds=60, probe_bound=False,
             note="not one request but the CPU saturated: deploy/'s memory limit and probe timeouts follow from it"),
    ]


# ---------------------------------------------------------------- running


@dataclass
class Row:
    case: str
    statuses: dict[int, int]
    seconds: float
    peak_mb: float  # peak VmRSS above the steady state before the case
    after_mb: float  # VmRSS above that steady state once the case is over (settled)
    probe_p50_ms: float
    probe_p99_ms: float
    probe_max_ms: float
    healthz_max_ms: float = 0.0
    probe_failures: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


def _fire(url: str, case: Case) -> list[Answer]:
    def one(_):
        with httpx.Client(base_url=url, timeout=120) as c:
            t0 = time.perf_counter()
            try:
                r = case.send(c)
                msg = r.text[:300]
                status = r.status_code
            except httpx.HTTPError as e:
                status, msg = 0, f"{type(e).__name__}: {e}"
            return Answer(status, msg, time.perf_counter() - t0)

    with ThreadPoolExecutor(case.copies) as ex:
        return list(ex.map(one, range(case.copies)))


def settle(srv: ServerProcess, target_mb: float, seconds: float = 3.0) -> float:
    """VmRSS once it is within ``target_mb`` (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    rss = srv.rss_mb()
    while rss > target_mb and time.monotonic() < deadline:
        time.sleep(0.1)
        rss = srv.rss_mb()
    return rss


def run_case(srv: ServerProcess, case: Case, steady_mb: float) -> Row:
    sampler, prober = MemorySampler(srv), Prober(srv.url)
    sampler.start()
    prober.start()
    time.sleep(0.2)  # the prober's baseline
    t0 = time.perf_counter()
    answers = _fire(srv.url, case)
    seconds = time.perf_counter() - t0
    time.sleep(0.2)
    prober.stop()
    peak = sampler.stop()
    after = settle(srv, steady_mb + 64)
    lat = sorted(prober.latencies) or [0.0]
    health = [t for t, k in zip(prober.latencies, prober.kinds) if k == "healthz"] or [0.0]
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    return Row(
        case.name, statuses, seconds, peak - steady_mb, after - steady_mb,
        statistics.median(lat) * 1e3, lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3, lat[-1] * 1e3,
        max(health) * 1e3, prober.failures, sorted({a.message[:160] for a in answers}), max(a.seconds for a in answers),
    )


def steady_state(srv: ServerProcess) -> float:
    """VmRSS after normal traffic (the probe's requests) has run for a while."""
    p = Prober(srv.url, every_s=0.01)
    p.start()
    time.sleep(1.5)
    p.stop()
    time.sleep(0.5)
    return srv.rss_mb()


def run_all(selected: list[Case] | None = None, full: bool = False, **settings: object) -> tuple[list[Row], float]:
    """Every case against one fresh server; (rows, steady-state MB)."""
    rows = []
    with server(full, **settings) as srv:
        steady = steady_state(srv)
        for case in selected or cases(full):
            rows.append(run_case(srv, case, steady))
            if not srv.alive():
                raise RuntimeError(f"the server died during {case.name!r}")
            steady = min(steady, srv.rss_mb()) if rows[-1].after_mb < 64 else steady
    return rows, steady


def table(rows: list[Row], steady: float, full: bool = False) -> str:
    load = os.getloadavg()
    what = "with the UI and every built model" if full else "the committed models, no UI"
    out = [
        f"Server: `poolops serve` defaults ({what}), 127.0.0.1, {os.cpu_count()} CPUs; "
        f"steady state {steady:.0f} MB resident; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Budget: {BUDGET_MB} MB above steady state.",
        "",
        "| case | answers | time s | peak +MB | after +MB | normal requests p50 / p99 / max ms | /healthz max ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ans = ", ".join(f"{n}x {s}" for s, n in sorted(r.statuses.items()))
        probe = f"{r.probe_p50_ms:.0f} / {r.probe_p99_ms:.0f} / {r.probe_max_ms:.0f}"
        if r.probe_failures:
            probe += f" ({len(r.probe_failures)} failed)"
        out.append(f"| {r.case} | {ans} | {r.seconds:.2f} | {r.peak_mb:.0f} | {r.after_mb:.0f} | {probe} | "
                   f"{r.healthz_max_ms:.0f} |")
    return "\n".join(out)


def main(only: list[str] | None = None, full: bool = False) -> int:
    """Print the table (Markdown) for every case, or those whose name contains one of ``only``."""
    selected = [c for c in cases(full) if not only or any(o in c.name for o in only)]
    rows, steady = run_all(selected, full)
    print(table(rows, steady, full))
    return 0
