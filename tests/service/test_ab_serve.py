"""``poolops bench ab``: two trees' servers measured side by side (a short run)."""

from __future__ import annotations

from poolops_service import ab_serve


def test_compares_this_tree_with_a_commit():
    res = ab_serve.compare("HEAD", blocks=2, per_block=10, model="digits-gap", size=48)
    assert set(res) == {"base HEAD", "this tree"}
    for latency_ms, cpu_ms in res.values():
        assert 0 < latency_ms < 1000 and 0 <= cpu_ms < 1000


def test_each_tree_imports_its_own_code(tmp_path):
    """The base server must run the base tree's code: the editable install maps
    ``poolops_service`` and ``poolops_models`` to this checkout whatever PYTHONPATH says."""
    import subprocess
    import sys
    from pathlib import Path

    tree = tmp_path / "tree"
    for name, folder in ab_serve.PACKAGES.items():
        (tree / folder).mkdir(parents=True)
        (tree / folder / "__init__.py").write_text(f"WHERE = {name!r}\n")
    code = "import poolops, poolops_models, poolops_service; print(poolops.__file__, poolops_models.__file__, " \
           "poolops_service.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=ab_serve.tree_env(tree, tmp_path / "shim"), cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert [Path(p).resolve().parent for p in out] == [(tree / f).resolve() for f in ab_serve.PACKAGES.values()]


def test_an_unknown_model_is_refused_before_any_server_starts():
    import pytest

    with pytest.raises(ValueError, match="unknown model"):
        ab_serve.compare("HEAD", model="nope")

