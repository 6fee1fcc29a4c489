"""``poolops bench serve``: what serving costs, on one model and one machine, in one run.

:func:`run_serve` measures, for one image of ``size`` x ``size`` pixels (a PNG):

1. **raw** ``session.run`` on the model's ONNX file (the server's providers and thread
   settings, batch of 1, sequential): the floor any server pays;
2. **this server** (``create_app`` under uvicorn in its own process, ``ui=false``,
   ``build_missing=false``, a registry holding only the model) with micro-batching on
   (the settings' defaults) and off (``POOLOPS_BATCH_MAX_SIZE=1``), through
   POST ``/v1/models/{name}/predict`` with the PNG as multipart ``files``;
3. a **naive** FastAPI app (:func:`naive_app`, also under uvicorn in its own process):
   what a user would write first, an ``async def`` endpoint that decodes the upload with
   Pillow and runs the torch model eagerly under ``torch.no_grad()`` per request. Its
   weights are freshly initialised (the committed model folders hold no torch weights):
   the time of a forward pass does not depend on the weights' values.

The HTTP setups are driven by ``wrk`` (:mod:`poolops_service.bench_wrk`) when it is
installed: N keep-alive connections for a fixed time per round, at a client cost of a few
hundredths of a millisecond per request. Without wrk, an async httpx client in this process
(N workers, a bounded number of requests) drives them, and the saturated levels then
measure the client too (1-2.5 ms of CPU per request). Client and servers share the
machine's cores; the table shows the CPU each side used per request and the client's share.
Raw ``session.run`` is also timed at batch sizes 1-16 for the best throughput the cores
give. The targets (:func:`verdicts`) are judged on this run's numbers.
"""

import asyncio
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolops.report import command_line, print_report

DEFAULT_MODEL = "digits-spp"
DEFAULT_SIZE = 128
DEFAULT_CONCURRENCY = (1, 8, 32)
DEFAULT_REQUESTS = 300  # timed requests per (setup, concurrency)
QUICK_REQUESTS = 30
DEFAULT_RAW_RUNS = 600
QUICK_RAW_RUNS = 100
LEVEL_TIMEOUT_S = 15.0  # wall-clock bound on one level's timed requests
QUICK_LEVEL_TIMEOUT_S = 5.0
WARMUP_TIMEOUT_S = 5.0  # and on its warm-up requests
ROUNDS = 3  # interleaved chunks per (setup, level)
QUICK_ROUNDS = 1
REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 180.0

# HTTP overhead: server (batching off, c=1) p50 - raw p50 (JPEG decode included for RGB models)
OVERHEAD_TARGET_MS = {"effnet-lite0-imagenet": 2.0}
DEFAULT_OVERHEAD_TARGET_MS = 1.0
CPU_TARGET = 1.15  # server CPU per request (batching off, c=1) / raw session CPU per image (batch 1)
SATURATION_TARGET = 0.85  # best server throughput / raw session.run's best images/s (any batch)
NAIVE_TARGET = 2.0  # server (batching on) / naive throughput at the highest concurrency
RAW_BATCHES = (1, 2, 4, 8, 16)  # batch sizes for raw session.run's best throughput
WRK_SECONDS = 4  # per (setup, level) and round, with wrk
QUICK_WRK_SECONDS = 1

RAW = "raw session.run"
ON = "server, batching on"
OFF = "server, batching off"
NAIVE = "naive FastAPI + torch"
SETUPS = (OFF, ON, NAIVE)

COLUMNS = ("setup", "concurrency", "requests", "throughput req/s", "p50 ms", "p99 ms",
           "client CPU ms/req", "server CPU ms/req", "client CPU share", "mean batch")

REPO = Path(__file__).resolve().parents[1]
NAIVE_MODEL_ENV = "POOLOPS_BENCH_NAIVE_MODEL"
NAIVE_DIR_ENV = "POOLOPS_BENCH_NAIVE_MODELS_DIR"


# ---- the naive baseline ---------------------------------------------------------------
def naive_torch_model(name: str, models_dir: Path):
    """``(torch model in eval mode, card)``: the model's architecture from its recipe
    (``poolops_models.recipes.RECIPES``; else from its card), freshly initialised (seed 0)."""
    import torch

    from poolops_models.classifier import build_model
    from poolops_models.cards import load_registry
    from poolops_models.recipes import RECIPES

    entry = load_registry(models_dir)[name]
    card = entry.card
    if name in RECIPES:
        config = RECIPES[name].config
    else:  # e.g. effnet-lite0-imagenet: the card records the architecture
        head = {k: v for k, v in card.head.items() if k != "resize"}
        backbone = {k: v for k, v in card.backbone.items() if k != "weights"}
        config = {"backbone": backbone, "head": head, "num_classes": len(card.labels),
                  "resize": card.head.get("resize")}
    torch.manual_seed(0)
    return build_model(config).eval(), card


def naive_app():
    """The baseline a user would write first: decode with Pillow, torch per request.

    A uvicorn factory (``poolops_service.bench_serve:naive_app``); the model comes from the
    ``POOLOPS_BENCH_NAIVE_MODEL`` and ``POOLOPS_BENCH_NAIVE_MODELS_DIR`` variables."""
    import torch
    from fastapi import FastAPI, File, UploadFile
    from PIL import Image

    model, card = naive_torch_model(os.environ[NAIVE_MODEL_ENV], Path(os.environ[NAIVE_DIR_ENV]))
    # on a GPU machine the naive user puts the model on the GPU too (POOLOPS_DEVICE=cuda)
    device = "cuda" if os.environ.get("POOLOPS_DEVICE") == "cuda" and torch.cuda.is_available() else "cpu"
    model = model.to(device)
    c = card.input.channels
    mean = np.asarray(card.preprocessing.get("mean", [0.0] * c), np.float32).reshape(c, 1, 1)
    std = np.asarray(card.preprocessing.get("std", [1.0] * c), np.float32).reshape(c, 1, 1)
    labels = list(card.labels)
    app = FastAPI(title="naive baseline")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "torch_threads": torch.get_num_threads(), "device": device}

    @app.post("/predict")
    async def predict(files: UploadFile = File(...)):
        data = await files.read()
        img = Image.open(io.BytesIO(data)).convert("L" if c == 1 else "RGB")
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        x = torch.from_numpy((a - mean) / std)[None].to(device)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0].cpu()
        top = torch.topk(probs, min(5, len(labels)))
        return {"results": [{"label": labels[i], "probability": p}
                            for p, i in zip(top.values.tolist(), top.indices.tolist())]}

    return app


# ---- processes ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; else None)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Server:
    """A uvicorn process on 127.0.0.1."""

    setup: str
    proc: subprocess.Popen
    url: str
    log: Any
    ready_path: str

    def cpu(self) -> float | None:
        return _cpu_seconds(self.proc.pid)

    def log_tail(self, n: int = 2000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _start(setup: str, target: str, env: dict[str, str], ready_path: str) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]
    log = tempfile.TemporaryFile()
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server(setup, proc, f"http://127.0.0.1:{port}", log, ready_path)


def _wait_ready(servers: Sequence[Server], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for s in list(pending):
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.setup}: the server exited ({s.proc.returncode}):\n{s.log_tail()}")
            try:
                r = httpx.get(s.url + s.ready_path, timeout=5)
                if r.status_code == 200:
                    pending.remove(s)
                    continue
                last = r.text
            except httpx.HTTPError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{s.setup}: not ready after {timeout:.0f} s: {last[:500]}\n{s.log_tail()}")
        time.sleep(0.1)


def start_servers(model: str, models_dir: Path, setups: Sequence[str], batch_max: int | None = None) -> dict[str, Server]:
    """Start the HTTP setups' processes (in parallel) and wait until each is ready; batching
    on takes the settings' defaults, or ``batch_max`` images per batch for ``model``."""
    drop = ("POOLOPS_BATCH_MAX_SIZE", "POOLOPS_BATCH_WAIT_MS", "POOLOPS_MODEL_BATCH_MAX_SIZE")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    server_env = {**base, "POOLOPS_MODELS_DIR": str(models_dir), "POOLOPS_UI": "false",
                  "POOLOPS_BUILD_MISSING": "false"}
    on_env = server_env if batch_max is None else {
        **server_env, "POOLOPS_MODEL_BATCH_MAX_SIZE": json.dumps({model: batch_max})}
    envs = {
        ON: ("poolops_service.app:create_app", on_env, "/readyz"),
        OFF: ("poolops_service.app:create_app", {**server_env, "POOLOPS_BATCH_MAX_SIZE": "1"}, "/readyz"),
        NAIVE: ("poolops_service.bench_serve:naive_app", {**base, NAIVE_MODEL_ENV: model, NAIVE_DIR_ENV: str(models_dir)},
                "/healthz"),
    }
    servers: dict[str, Server] = {}
    try:
        for s in setups:
            servers[s] = _start(s, *envs[s])
        _wait_ready(list(servers.values()), START_TIMEOUT_S)
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
    return servers


def servable_entry(model: str, models_dir: Path | None = None):
    """Registry entry of ``model`` in ``models_dir`` (default the zoo); ValueError when it is
    unknown or unavailable."""
    from poolops_models.cards import load_registry
    from poolops_models.recipes import zoo_dir

    src = Path(models_dir) if models_dir else zoo_dir()
    registry = load_registry(src)
    if model not in registry:
        raise ValueError(f"unknown model {model!r} in {src}; registered: {', '.join(registry) or 'none'}")
    entry = registry[model]
    if not entry.available:
        raise ValueError(f"model {model!r} is unavailable: {entry.reason}")
    return entry


def upload_format(channels: int, fmt: str | None) -> str:
    """The upload's format: ``fmt``, else PNG for grey models and JPEG for RGB ones."""
    return (fmt or ("PNG" if channels == 1 else "JPEG")).upper()


def uses_wrk(client: str) -> bool:
    """Whether ``client`` (``auto``, ``wrk`` or ``httpx``) means wrk; ValueError when wrk is
    asked for and not installed."""
    from poolops_service.bench_wrk import wrk_path

    if client not in ("auto", "wrk", "httpx"):
        raise ValueError(f"client must be auto, wrk or httpx, got {client!r}")
    if client == "wrk" and wrk_path() is None:
        raise ValueError("--client wrk: wrk is not installed (Debian: apt-get install wrk)")
    return client == "wrk" or (client == "auto" and wrk_path() is not None)


# ---- measurements -------------------------------------------------------------------
def make_png(size: tuple[int, int], channels: int, fmt: str = "PNG") -> bytes:
    """A digit-like test image: a thick bright stroke on black (what the models expect),
    encoded as ``fmt`` (PNG, or JPEG at quality 90)."""
    from PIL import Image, ImageDraw

    h, w = size
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    s = max(1, min(h, w) // 8)
    d.line([(w * 0.3, h * 0.25), (w * 0.7, h * 0.25), (w * 0.45, h * 0.8)], fill=255, width=s)
    if channels == 3:
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _stats(lat_s: Sequence[float], wall_s: float) -> dict[str, float]:
    a = np.asarray(lat_s) * 1e3
    return {"n": len(a), "throughput": len(a) / wall_s if wall_s > 0 else float("nan"),
            "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


class Raw:
    """``session.run`` with batch 1 through the server's own session factory (providers
    from ``POOLOPS_DEVICE``, intra-op threads from ``POOLOPS_THREADS`` or the CPU quota),
    on the size the server's model actually runs (``size`` after the card's size policy)."""

    def __init__(self, onnx_path: Path, size: tuple[int, int], channels: int):
        from poolops_service.config import Settings
        from poolops_service.engine.sessions import choose_providers, cpu_quota, make_session

        settings = Settings()
        self.threads = settings.threads or cpu_quota()
        self.sess = make_session(onnx_path, choose_providers(settings.device), self.threads)
        h, w = size
        self.feeds = {"x": np.random.default_rng(0).random((1, channels, h, w), dtype=np.float32)}
        if "valid" in self.sess.input_names:
            self.feeds["valid"] = np.array([[h, w]], np.int64)
        self.acc = _Acc(RAW, 1, 0)

    def warm_up(self) -> None:
        t_end = time.perf_counter() + 0.5
        for i in range(1000):  # >= 10 runs and 0.5 s
            self.sess.session.run(None, self.feeds)
            if i >= 10 and time.perf_counter() > t_end:
                break

    def best(self, batches: Sequence[int] = RAW_BATCHES, seconds: float = 0.5) -> tuple[float, int]:
        """(images/s, batch): the best throughput over ``batches``, each run for ``seconds``."""
        best = (0.0, 1)
        for b in batches:
            feeds = {k: np.repeat(v, b, axis=0) for k, v in self.feeds.items()}
            self.sess.session.run(None, feeds)
            n, t0 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t0 < seconds:
                self.sess.session.run(None, feeds)
                n += 1
            best = max(best, (n * b / (time.perf_counter() - t0), b))
        return best

    def chunk(self, runs: int) -> None:
        run, feeds, lat = self.sess.session.run, self.feeds, self.acc.lat
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(runs):
            t = time.perf_counter()
            run(None, feeds)
            lat.append(time.perf_counter() - t)
        self.acc.wall += time.perf_counter() - t0
        self.acc.server_cpu += time.process_time() - c0
        self.acc.asked += runs


@dataclass
class _Acc:
    """One (setup, concurrency) measurement, accumulated over interleaved rounds."""

    setup: str
    concurrency: int
    asked: int
    lat: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    wall: float = 0.0
    client_cpu: float | None = 0.0
    server_cpu: float | None = 0.0
    batch_sum: float = 0.0
    batch_count: float = 0.0
    stopped: bool = False
    wrk: list = field(default_factory=list)  # (ok requests, p50 ms, p99 ms) per wrk round

    def row(self, bound_s: float) -> dict[str, Any]:
        done = sum(k for k, _, _ in self.wrk) if self.wrk else len(self.lat)
        n_err = sum(self.errors.values())
        per = (lambda v: v / done * 1e3 if done and v is not None else None)
        batch = self.batch_sum / self.batch_count if self.batch_count else (1.0 if self.setup in (RAW, NAIVE) else None)
        row = {"setup": self.setup, "concurrency": self.concurrency, "errors": n_err,
               "client_cpu": None if self.setup == RAW else per(self.client_cpu),
               "server_cpu": per(self.server_cpu), "batch": batch}
        both = (self.client_cpu or 0) + (self.server_cpu or 0)
        row["client_share"] = (self.client_cpu / both if both and self.setup != RAW
                               and self.client_cpu is not None and self.server_cpu is not None else None)
        if done and self.wrk:  # wrk gives percentiles per round: request-weighted p50, worst p99
            row.update(n=done, throughput=done / self.wall, p99=max(p for _, _, p in self.wrk),
                       p50=sum(k * p for k, p, _ in self.wrk) / done)
        elif done:
            row.update(_stats(self.lat, self.wall))
        else:
            row.update(n=0, throughput=0.0, p50=float("nan"), p99=float("nan"))
        notes = []
        if self.errors:
            notes.append("errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.errors.items())))
        if self.stopped:
            notes.append(f"stopped at the {bound_s:.0f} s bound after {done + n_err} of {self.asked}")
        row["note"] = "; ".join(notes)
        return row


def _batch_totals(metrics_text: str, model: str) -> tuple[float, float] | None:
    s = c = None
    for line in metrics_text.splitlines():
        if line.startswith(f'poolops_batch_size_sum{{model="{model}"}}'):
            s = float(line.split()[-1])
        elif line.startswith(f'poolops_batch_size_count{{model="{model}"}}'):
            c = float(line.split()[-1])
    return (s, c) if s is not None and c is not None else None


def _multipart(url: str, image: bytes, fmt: str) -> tuple[bytes, str]:
    """(body, content type) of a multipart upload of ``image`` as ``files``."""
    import httpx

    ext = fmt.lower()
    form = httpx.Request("POST", url, files={"files": (f"image.{ext}", image, f"image/{ext}")})
    return form.read(), form.headers["content-type"]


async def _drive(url: str, png: bytes, concurrency: int, n: int, timeout_s: float, fmt: str = "PNG"):
    """``n`` POSTs by ``concurrency`` workers; (latencies of the 200s, error counts, wall s,
    whether the time bound stopped it)."""
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    left = [n]
    deadline = time.perf_counter() + timeout_s
    # the multipart body is encoded once: the same bytes every request, less client CPU
    body, ctype = _multipart(url, png, fmt)
    headers = {"content-type": ctype}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        async def worker():
            while left[0] > 0 and time.perf_counter() < deadline:
                left[0] -= 1
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=headers)
                    ok, key = r.status_code == 200, str(r.status_code)
                except httpx.HTTPError as e:
                    ok, key = False, type(e).__name__
                dt = time.perf_counter() - t
                if ok:
                    lat.append(dt)
                else:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return lat, errors, wall, left[0] > 0


class Http:
    """One HTTP setup at one concurrency level, measured in chunks (by wrk for
    ``wrk_seconds`` each when given, else by httpx for a number of requests)."""

    def __init__(self, server: Server, path: str, png: bytes, concurrency: int, model: str, fmt: str = "PNG",
                 wrk_seconds: int | None = None):
        self.server, self.url, self.png, self.model = server, server.url + path, png, model
        self.acc = _Acc(server.setup, concurrency, 0)
        self.fmt, self.wrk_seconds = fmt, wrk_seconds

    def warm_up(self) -> None:
        c = self.acc.concurrency
        asyncio.run(_drive(self.url, self.png, c, max(2 * c, 10), WARMUP_TIMEOUT_S, self.fmt))

    def _batches(self) -> tuple[float, float] | None:
        if self.server.setup == NAIVE:
            return None
        import httpx

        return _batch_totals(httpx.get(self.server.url + "/metrics", timeout=10).text, self.model)

    def chunk(self, n: int, timeout_s: float) -> None:
        a = self.acc
        before = self._batches()
        s0, c0 = self.server.cpu(), time.process_time()
        if self.wrk_seconds:
            from poolops_service.bench_wrk import run_wrk

            body, ctype = _multipart(self.url, self.png, self.fmt)
            w = run_wrk(self.url, body, ctype, a.concurrency, self.wrk_seconds, REQUEST_TIMEOUT_S)
            s1, c1 = self.server.cpu(), c0 + w.cpu_s
            lat, errors, wall, stopped = [], dict(w.errors), w.seconds, False
            a.wrk.append((w.ok, w.p50_ms, w.p99_ms))
            n = w.requests
        else:
            lat, errors, wall, stopped = asyncio.run(_drive(self.url, self.png, a.concurrency, n, timeout_s, self.fmt))
            s1, c1 = self.server.cpu(), time.process_time()
        after = self._batches()
        a.lat += lat
        for k, v in errors.items():
            a.errors[k] = a.errors.get(k, 0) + v
        a.wall += wall
        a.asked += n
        a.stopped |= stopped
        a.client_cpu += c1 - c0
        a.server_cpu = None if s0 is None or s1 is None or a.server_cpu is None else a.server_cpu + s1 - s0
        if before and after:
            a.batch_sum += after[0] - before[0]
            a.batch_count += after[1] - before[1]


def _split(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]


# ---- verdicts and output ------------------------------------------------------------
def _find(rows, setup, conc):
    return next((r for r in rows if r["setup"] == setup and r["concurrency"] == conc and r["n"]), None)


def _judge(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def verdicts(rows: list[dict[str, Any]], levels: Sequence[int], model: str = DEFAULT_MODEL,
             raw_best: tuple[float, int] | None = None) -> list[str]:
    """The targets, judged on ``rows``; each line says MET or NOT MET with its numbers.

    ``raw_best``: raw ``session.run``'s best (images/s, batch size) on these cores."""
    top, low = max(levels), min(levels)
    out = []
    raw, off1 = _find(rows, RAW, 1), _find(rows, OFF, low)
    if raw and off1:
        d, limit = off1["p50"] - raw["p50"], OVERHEAD_TARGET_MS.get(model, DEFAULT_OVERHEAD_TARGET_MS)
        out.append(f"HTTP overhead: server (batching off, concurrency {low}) p50 {off1['p50']:.2f} ms - "
                   f"raw session.run p50 {raw['p50']:.2f} ms = {d:.2f} ms (target <= {limit:g} ms): "
                   f"{_judge(d <= limit)}")
    else:
        out.append("HTTP overhead: NOT MET (no measurement: n/a)")
    if raw and off1 and raw.get("server_cpu") and off1.get("server_cpu"):
        r = off1["server_cpu"] / raw["server_cpu"]
        out.append(f"Server CPU per request: batching off, concurrency {low} {off1['server_cpu']:.2f} ms / raw "
                   f"session.run {raw['server_cpu']:.2f} ms per image = {r:.2f}x (target <= {CPU_TARGET:g}x): "
                   f"{_judge(r <= CPU_TARGET)}")
    else:
        out.append("Server CPU per request: NOT MET (no measurement: n/a)")
    served = [r for r in rows if r["setup"] in (ON, OFF) and r["n"]]
    if raw_best and served:
        best = max(served, key=lambda r: r["throughput"])
        f = best["throughput"] / raw_best[0]
        out.append(f"Saturation: best server throughput {best['throughput']:.1f} req/s ({best['setup']}, "
                   f"concurrency {best['concurrency']}) / raw session.run's best {raw_best[0]:.1f} images/s "
                   f"(batch {raw_best[1]}) = {f:.2f} (target >= {SATURATION_TARGET:g}): {_judge(f >= SATURATION_TARGET)}")
    else:
        out.append("Saturation: NOT MET (no measurement: n/a)")
    pairs = [(c, _find(rows, ON, c), _find(rows, OFF, c)) for c in levels]
    if all(on and off for _, on, off in pairs):
        ratios = [(c, on["throughput"] / off["throughput"]) for c, on, off in pairs]
        out.append("Batching never slower: on / off throughput " +
                   ", ".join(f"{g:.2f}x at {c}" for c, g in ratios) +
                   f" (target >= 1x at every level): {_judge(all(g >= 1 for _, g in ratios))}")
    else:
        out.append("Batching never slower: NOT MET (no measurement: n/a)")
    on, nv = _find(rows, ON, top), _find(rows, NAIVE, top)
    if on and nv:
        g = on["throughput"] / nv["throughput"]
        out.append(f"Server vs naive at concurrency {top}: batching on {on['throughput']:.1f} req/s / naive "
                   f"{nv['throughput']:.1f} req/s = {g:.2f}x (target >= {NAIVE_TARGET:g}x): {_judge(g >= NAIVE_TARGET)}")
    else:
        out.append(f"Server vs naive at concurrency {top}: NOT MET (no measurement: n/a)")
    return out


def _f(v, d=2) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{d}f}"


def _cells(r: dict[str, Any]) -> list[str]:
    req = str(r["n"]) + (f" (+{r['errors']} failed)" if r.get("errors") else "")
    if r["setup"] == RAW:
        req += " runs"
    share = r.get("client_share")
    cells = [r["setup"], str(r["concurrency"]), req, _f(r["throughput"], 1), _f(r["p50"]), _f(r["p99"]),
             _f(r["client_cpu"]), _f(r["server_cpu"]), "" if share is None else f"{share:.0%}", _f(r["batch"], 1)]
    if r.get("note"):
        cells[2] += f" [{r['note']}]"
    return cells


def _print(rows, header, notes, targets, markdown: bool) -> None:
    title = ("poolops bench serve" if markdown else
             "poolops bench serve: raw session.run vs this server vs a naive FastAPI + torch app")
    print_report(title=title, made_by=command_line("poolops bench serve --markdown > docs/bench_serve.md"), columns=COLUMNS,
                 right=set(range(1, len(COLUMNS))), rows=[(_cells(r), bool(r.get("errors"))) for r in rows],
                 header=header, targets=targets, notes=notes, markdown=markdown, width=170)


def run_serve(
    model: str = DEFAULT_MODEL,
    size: int | tuple[int, int] = DEFAULT_SIZE,
    requests: int | None = None,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    quick: bool = False,
    markdown: bool = False,
    models_dir: Path | None = None,
    client: str = "auto",
    fmt: str | None = None,
    batch_max: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark and print the table; returns ``{"rows", "verdicts", "header", "raw_best"}``.

    ``client``: ``wrk``, ``httpx`` or ``auto`` (wrk when installed). ``fmt``: the upload's
    format, PNG or JPEG (default: PNG for grey models, JPEG for RGB ones). ``batch_max``:
    the model's batch limit with batching on (``POOLOPS_MODEL_BATCH_MAX_SIZE``, as
    ``poolops bench batch`` recommends; default: the settings' ``batch_max_size``).

    Each row: ``setup``, ``concurrency``, ``n`` (timed requests that succeeded), ``errors``,
    ``throughput`` (req/s), ``p50`` and ``p99`` (ms), ``client_cpu`` and ``server_cpu``
    (CPU ms per request), ``batch`` (mean images per model batch), ``note``."""
    import onnxruntime as ort

    from poolops.bench import cpu_model
    from poolops_models import size_policy
    from poolops_service.bench_wrk import wrk_path
    from poolops_service.engine.sessions import cpu_quota

    if batch_max is not None and batch_max < 1:
        raise ValueError(f"batch_max must be >= 1, got {batch_max}")
    levels = sorted({int(c) for c in concurrency})
    if not levels or levels[0] < 1:
        raise ValueError(f"concurrency levels must be >= 1, got {list(concurrency)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    n_req = requests if requests is not None else (QUICK_REQUESTS if quick else DEFAULT_REQUESTS)
    n_raw = max(n_req, QUICK_RAW_RUNS if quick else DEFAULT_RAW_RUNS)
    level_timeout = QUICK_LEVEL_TIMEOUT_S if quick else LEVEL_TIMEOUT_S
    rounds = QUICK_ROUNDS if quick else ROUNDS
    entry = servable_entry(model, models_dir)
    channels = entry.card.input.channels
    fmt = upload_format(channels, fmt)
    png = make_png(hw, channels, fmt)
    run_hw = size_policy.target_size(*hw, entry.card.size_policy, entry.card.input)  # what the server runs
    use_wrk = uses_wrk(client)
    wrk_seconds = (QUICK_WRK_SECONDS if quick else WRK_SECONDS) if use_wrk else None
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="poolops-bench-serve-") as tmp:
        reg = Path(tmp) / "zoo"  # only this model: start-up loads and warms up every model
        shutil.copytree(entry.path, reg / model)
        servers = start_servers(model, reg, SETUPS, batch_max)
        try:
            import httpx

            naive_health = httpx.get(servers[NAIVE].url + "/healthz", timeout=10).json()
            torch_threads = naive_health.get("torch_threads")
            naive_device = naive_health.get("device", "cpu")
            raw = Raw(reg / model / "model.onnx", run_hw, channels)
            raw.warm_up()
            raw_best = raw.best(RAW_BATCHES, 0.2 if quick else 0.5)
            http = {(st, c): Http(servers[st], "/predict" if st == NAIVE else f"/v1/models/{model}/predict",
                                  png, c, model, fmt, wrk_seconds) for c in levels for st in SETUPS}
            # Each level is measured for every setup in `rounds` interleaved chunks (raw
            # session.run with the first level) before the next level, so that all setups
            # see the same machine load; each setup's level has `level_timeout` in all.
            for c in levels:
                group = ([raw] if c == levels[0] else []) + [http[st, c] for st in SETUPS]
                for m in group:
                    if m is not raw:
                        m.warm_up()
                for r in range(rounds):
                    for m in group:
                        if m is raw:
                            raw.chunk(_split(n_raw, rounds)[r])
                        else:
                            m.chunk(_split(n_req, rounds)[r], level_timeout / rounds)
            rows.append(raw.acc.row(level_timeout))
            provider, threads = raw.sess.provider, raw.threads
            rows.extend(http[st, c].acc.row(level_timeout) for st in SETUPS for c in levels)
        finally:
            for s in servers.values():
                s.stop()

    from poolops_service.config import Settings

    fields = Settings.model_fields
    header = [
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, CPU quota {cpu_quota()} "
        f"({platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"1-min load average {load} before the run); client and servers share these cores",
        f"model: {model} ({channels} channel(s)); image {hw[0]}x{hw[1]} {fmt} of {len(png)} bytes, one per request; "
        f"the card's size policy ({size_policy.describe(entry.card.size_policy)}) makes it {run_hw[0]}x{run_hw[1]}",
        f"raw: onnxruntime {ort.__version__} InferenceSession.run in the benchmark process on the "
        f"{run_hw[0]}x{run_hw[1]} tensor the server runs, {provider}, intra_op_num_threads={threads} (the "
        f"server's setting), batch 1, {n_raw} sequential runs; best throughput over batches "
        f"{', '.join(map(str, RAW_BATCHES))}: {raw_best[0]:.1f} images/s at batch {raw_best[1]}",
        "server: create_app under uvicorn (own process, ui=false, build_missing=false); batching on = defaults "
        + (f"(batch_max_size={fields['batch_max_size'].default}" if batch_max is None else
           f"(the model's own limit POOLOPS_MODEL_BATCH_MAX_SIZE='{{\"{model}\": {batch_max}}}'")
        + f", batch_wait_ms={fields['batch_wait_ms'].default:g}), "
        "off = POOLOPS_BATCH_MAX_SIZE=1; POST /v1/models/{name}/predict, multipart files",
        f"naive: FastAPI async def endpoint under uvicorn (own process), Pillow decode, torch eager "
        f"on {naive_device} (torch.no_grad, {torch_threads} threads), freshly initialised weights "
        "(time does not depend on them)",
        (f"client: wrk ({wrk_path()}), N keep-alive connections, {wrk_seconds} s per round after max(2N, 10) "
         "httpx warm-up requests; the multipart body is encoded once" if use_wrk else
         f"client: httpx.AsyncClient in the benchmark process (wrk not used: the saturated levels measure the "
         f"client too), N workers with keep-alive connections; per level max(2N, 10) warm-up requests (bound "
         f"{WARMUP_TIMEOUT_S:.0f} s), then {n_req} timed requests (bound {level_timeout:.0f} s); the multipart "
         "body is encoded once"),
        f"order: level by level; within a level every setup (and raw session.run, with the first level) runs "
        f"in {rounds} interleaved round(s) of chunks, so that all see the same machine load",
    ]
    notes = [
        "throughput = successful timed requests / wall time of the level; p50 and p99 = client-side latency "
        "of each request (raw: of each session.run; wrk: request-weighted p50 and worst p99 of the rounds)",
        "client CPU ms/req = the client's CPU time per request (wrk's process, or the httpx benchmark process); "
        "server CPU ms/req = the server process's CPU time per request (raw: the session's, all threads); "
        "client CPU share = client / (client + server); mean batch = images per model batch from /metrics",
        "the naive app runs the torch model on the upload as it is (no size policy)",
    ]
    targets = verdicts(rows, levels, model, raw_best)
    _print(rows, header, notes, targets, markdown)
    return {"rows": rows, "verdicts": targets, "header": header, "raw_best": raw_best}
