"""Layers point one way: ``poolops`` (the library) <- ``poolops_models`` (folder ``models/``)
<- ``poolops_service`` (folder ``service/``, with the ``poolops`` command, ``service/cli.py``,
at the top). No ``poolops`` module imports either, at import time or in any function."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import poolops

ROOT = Path(poolops.__file__).resolve().parent
# the old generic names too: nothing may come back to them
UPPER = ("poolops_models", "poolops_service", "models", "service")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="poolops."))


def test_no_poolops_source_imports_models_or_service():
    bad = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[0] in UPPER]
    assert bad == [], "\n".join(bad)


def test_every_poolops_module_imports_without_models_or_service():
    """In a fresh interpreter where importing ``models`` or ``service`` fails."""
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {UPPER!r}:\n"
        "            raise ImportError(f'{name} is above poolops')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
