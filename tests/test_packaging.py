"""The wheel adds only the project's own names to site-packages: ``poolops`` and the
folders ``models/`` and ``service/`` under the import names ``poolops_models`` and
``poolops_service`` (``pyproject.toml``'s package-dir), never generic ``models``/``service``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"poolops": "poolops", "models": "poolops_models", "service": "poolops_service"}


def test_wheel_holds_only_the_projects_top_level_names(tmp_path):
    # built from a copy: setuptools leaves build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "zoo", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(src)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("poolops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(FOLDERS.values()), top
    # every module of every folder is in the wheel, under its import name
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).as_posix()
            assert f"{name}/{rel}" in names, f"{folder}/{rel} is missing from the wheel"
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "poolops = poolops_service.cli:main" in entry


def test_the_generic_names_are_not_importable_from_outside_the_repository(tmp_path):
    code = ("import importlib.util as u; "
            "print([n for n in ('models', 'service') if u.find_spec(n) is not None])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
