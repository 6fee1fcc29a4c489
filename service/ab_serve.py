"""``poolops bench ab --base REF``: this tree's server against another commit's, side by side.

Both servers run at once (``poolops serve`` from each tree, one model, this checkout's
model folder for both) and are driven in turn, in interleaved blocks of sequential
requests (a ``size`` x ``size`` image, PNG for grey models and JPEG for RGB ones, to
``/v1/models/{model}/predict``), so that the machine's drift hits both alike; the
medians over the blocks of latency and of server CPU per request (from ``/proc``) are
compared. For "is this change slower?" questions a few percent apart, where two separate
``poolops bench serve`` runs differ more than that on a shared machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


# import name -> folder in a tree (pyproject's package-dir): the editable install maps these
# names to this checkout, so a base tree's folders are put first on the path under them
PACKAGES = {"poolops": "poolops", "poolops_models": "models", "poolops_service": "service"}


def tree_env(tree: Path, shim: Path) -> dict[str, str]:
    """The environment in which ``tree``'s own code is imported: ``shim`` (made here) holds
    one link per import name to the tree's folder and goes first on ``PYTHONPATH`` (with
    ``PYTHONPATH=tree`` alone, ``poolops_service`` and ``poolops_models`` would still come
    from the editable install, i.e. this checkout)."""
    shim.mkdir(parents=True, exist_ok=True)
    for name, folder in PACKAGES.items():
        link = shim / name
        if not link.exists():
            link.symlink_to(tree / folder, target_is_directory=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(tree)])}


def _start(tree: Path, shim: Path, zoo: Path, port: int, size: int) -> subprocess.Popen:
    env = {**tree_env(tree, shim), "POOLOPS_MODELS_DIR": str(zoo), "POOLOPS_BUILD_MISSING": "false",
           "POOLOPS_UI": "false", "POOLOPS_PORT": str(port), "POOLOPS_WARMUP_SIZES": f"[[{size}, {size}]]"}
    return subprocess.Popen([sys.executable, "-m", "poolops_service.cli", "serve", "--log-level", "warning"],
                            env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(base: str, blocks: int = 12, per_block: int = 150, model: str = "digits-spp",
            size: int = 128) -> dict[str, tuple[float, float]]:
    """{tree: (median latency ms, median server CPU ms per request)} for ``base`` and HEAD's work tree."""
    from poolops_service.bench_serve import make_png, servable_entry, upload_format
    from poolops_service.hostile import free_port

    entry = servable_entry(model)  # checked before any server starts
    fmt = upload_format(entry.card.input.channels, None)
    image = make_png((size, size), entry.card.input.channels, fmt)
    files = [("files", (f"a.{fmt.lower()}", image, f"image/{fmt.lower()}"))]
    path = f"/v1/models/{model}/predict"

    tmp = Path(tempfile.mkdtemp(prefix="poolops-ab-"))
    old = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), base], check=True)
    trees = {f"base {base}": old, "this tree": ROOT}
    procs, clients = {}, {}
    try:
        for name, tree in trees.items():
            zoo = tmp / f"zoo-{len(procs)}"
            shutil.copytree(entry.path, zoo / model)
            port = free_port()
            procs[name] = _start(tree, tmp / f"shim-{len(procs)}", zoo, port, size)
            clients[name] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for c in clients.values():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        for c in clients.values():  # warm-up
            for _ in range(100):
                c.post(path, files=files).raise_for_status()
        lat: dict[str, list[float]] = {n: [] for n in trees}
        cpu: dict[str, list[float]] = {n: [] for n in trees}
        for _ in range(blocks):
            for name, c in clients.items():
                c0, t0 = _cpu_s(procs[name].pid), time.perf_counter()
                for _ in range(per_block):
                    c.post(path, files=files).raise_for_status()
                lat[name].append((time.perf_counter() - t0) / per_block * 1e3)
                cpu[name].append((_cpu_s(procs[name].pid) - c0) / per_block * 1e3)
        return {n: (statistics.median(lat[n]), statistics.median(cpu[n])) for n in trees}
    finally:
        for c in clients.values():
            c.close()
        for p in procs.values():
            p.terminate()
            p.wait(30)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main(base: str, model: str = "digits-spp", size: int = 128, blocks: int = 12, per_block: int = 150) -> int:
    res = compare(base, blocks, per_block, model, size)
    print(f"{model}, {size}x{size} image, concurrency 1, {blocks} interleaved blocks of {per_block} requests; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| server | latency per request, median ms | server CPU per request, median ms |")
    print("|---|---:|---:|")
    for name, (lat, cpu) in res.items():
        print(f"| {name} | {lat:.2f} | {cpu:.2f} |")
    return 0
