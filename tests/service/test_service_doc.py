"""docs/service.md's examples run for real: every curl line and the httpx snippet
against a live server, and its settings table matches ``Settings``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import api, zoo_copy  # noqa: F401 - fixtures
from poolops_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "docs" / "service.md").read_text()


def _block(lang: str, marker: str) -> str:
    for block in re.findall(rf"```{lang}\n(.*?)```", README, re.S):
        if marker in block:
            return block
    raise AssertionError(f"no {lang} block with {marker!r} in docs/service.md")


def curl_lines() -> list[str]:
    text = _block("bash", "# api-examples").replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith("curl")]


def _local(text: str, api: str) -> str:
    return text.replace("http://localhost:8000", api).replace("localhost:8000", api).replace(
        "docs/examples/", f"{ROOT}/docs/examples/")


@pytest.mark.parametrize("line", curl_lines())
def test_curl_example(api, tmp_path, line):
    cmd = _local(line, api).replace("curl -s ", "curl -sS --fail-with-body ", 1)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])


def test_python_example(api):
    code = _local(_block("python", "import httpx"), api)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "[[[[5.0, 6.0]]]] [[[[1, 5]]]]"
    assert "'index': 7, 'label': '7'" in second


def test_settings_table_matches_settings():
    rows = re.findall(r"^\| `POOLOPS_(\w+)` \| (.*?) \| (.*?) \|$", README, re.M)
    assert [r[0].lower() for r in rows] == list(Settings.model_fields)
    for name, default, what in rows:
        field = Settings.model_fields[name.lower()]
        assert what == (field.description or ""), name
        if field.default_factory is None and field.default not in ("", None):
            assert default == f"`{field.default}`", name


def test_grpc_example(tmp_path):
    """The tritonclient.grpc snippet, against a server with its gRPC port on."""
    from live_server import copy_zoo, free_port, run_server, server_settings

    port = free_port()
    code = _block("python", "tritonclient.grpc").replace("localhost:8001", f"127.0.0.1:{port}")
    with run_server(server_settings(copy_zoo(tmp_path, ["digits-gap"]), grpc_port=port)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    first, count = out.stdout.splitlines()[:2]
    assert re.fullmatch(r"\[\[b'[-0-9.]+:\d:\d' b'[-0-9.]+:\d:\d' b'[-0-9.]+:\d:\d'\]\]", first), first
    assert count == "count: 1"
