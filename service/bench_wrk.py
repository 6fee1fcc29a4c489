"""Driving an HTTP server with ``wrk`` (Debian's package): a load generator in C whose own
CPU per request is a small fraction of the server's, so that saturated levels measure the
server and not the client (an httpx client in Python costs 1-2.5 ms of CPU per request on
the same cores).

:func:`run_wrk` POSTs one fixed body (the multipart upload, encoded once) over
``connections`` keep-alive connections for ``seconds`` and returns what wrk saw plus its
own CPU time (from ``os.wait4``'s resource usage of the wrk process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# wrk's Lua: the body and content type come from files named by the environment; done()
# prints one line the caller parses (latencies are in microseconds)
_SCRIPT = r"""
local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s end
wrk.method = "POST"
wrk.body = slurp(os.getenv("POOLOPS_WRK_BODY"))
wrk.headers["Content-Type"] = slurp(os.getenv("POOLOPS_WRK_TYPE"))
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("POOLOPS_WRK %d %d %d %d %d %d %d %.1f %.1f\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_path() -> str | None:
    """The ``wrk`` executable on PATH, or None."""
    return shutil.which("wrk")


@dataclass
class WrkResult:
    """What one wrk run saw: ``requests`` completed (any status), ``ok`` (2xx/3xx),
    ``seconds`` of wall time, latencies ``p50_ms`` / ``p99_ms`` over all completed
    requests, ``errors`` by kind, and wrk's own ``cpu_s``."""

    requests: int
    ok: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    cpu_s: float


def run_wrk(url: str, body: bytes, content_type: str, connections: int, seconds: float,
            timeout_s: float = 30.0) -> WrkResult:
    """POST ``body`` to ``url`` over ``connections`` connections (one wrk thread per 16
    connections, at most 2: the machine's cores are the server's) for ``seconds``
    (whole seconds, at least 1: wrk takes no fractions)."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    threads = max(1, min(2, connections // 16))
    with tempfile.TemporaryDirectory(prefix="poolops-wrk-") as tmp:
        t = Path(tmp)
        (t / "body").write_bytes(body)
        (t / "type").write_text(content_type)
        (t / "script.lua").write_text(_SCRIPT)
        env = {**os.environ, "POOLOPS_WRK_BODY": str(t / "body"), "POOLOPS_WRK_TYPE": str(t / "type")}
        cmd = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", f"{timeout_s:g}s", "-s", str(t / "script.lua"), url]
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read().decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("POOLOPS_WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-1000:]}")
    f = line.split()[1:]
    requests, duration_us = int(f[0]), int(f[1])
    kinds = ("connect", "read", "write", "status", "timeout")
    errors = {k: int(v) for k, v in zip(kinds, f[2:7]) if int(v)}
    return WrkResult(requests=requests, ok=requests - errors.get("status", 0), seconds=duration_us / 1e6,
                     p50_ms=float(f[7]) / 1e3, p99_ms=float(f[8]) / 1e3, errors=errors,
                     cpu_s=usage.ru_utime + usage.ru_stime)
