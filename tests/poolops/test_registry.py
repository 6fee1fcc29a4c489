"""The registry is the one source of every op: each reaches every face from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_backward_model, op_model

FOUNDATION_OPS = {"max", "avg", "stochastic", "global_avg", "global_max", "adaptive_avg", "adaptive_max", "spp"}


def test_foundation_ops_registered():
    assert FOUNDATION_OPS <= set(poolops.list_ops())


@pytest.mark.parametrize("name", poolops.list_ops())
def test_op_reaches_every_face(name):
    spec = poolops.get_op(name)
    assert spec.doc and spec.doc.strip()
    spec.parse({})  # defaults are valid
    assert callable(getattr(PF, name))
    assert issubclass(getattr(PN, spec.module_name), PN.PoolOp)
    assert spec.params.model_json_schema()["type"] == "object"
    model = op_model(name)
    assert [o.name for o in model.graph.output] == list(spec.outputs)
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 18), ("poolops", 1)}
    assert [f.domain for f in model.functions] == ["poolops"]
    assert all(node.domain == "" for f in model.functions for node in f.node)
    if spec.onnx_backward is not None:
        assert [o.name for o in op_backward_model(name).graph.output] == ["grad_x"]


def test_core_imports_no_torch():
    """The serving process builds op graphs without torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import poolops, poolops.onnx\n"
        "for n in poolops.list_ops():\n"
        "    poolops.onnx.op_model(n)\n"
        "    if poolops.get_op(n).onnx_backward: poolops.onnx.op_backward_model(n)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_check_that_takes_the_other_inputs_runs_after_their_kind_checks():
    """roi_align's sample-grid check reads the boxes: a malformed boxes tensor is
    reported by the kind check (shape), not by an error inside the op's check."""
    import numpy as np

    from poolops.params import ParamError

    spec = poolops.get_op("roi_align")
    p = spec.parse({})
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(ParamError, match=r"'boxes': expected shape \[K, 5\]"):
        spec.check(p, x, np.ones((2, 4), np.float32))
    with pytest.raises(ParamError, match="'boxes'.*2 \\* 4 \\+ 2"):
        spec.check(p, x, np.array([[0, 0, 0, 100, 1]], np.float32))
    spec.check(p, x, np.array([[0, 0, 0, 3, 3]], np.float32))


def test_parameter_strategies_sit_beside_their_op_files():
    """Each ``tests/support/ops/<file>.py`` gives the strategies of the ops of
    ``poolops/ops/<file>.py`` only, and no op has two."""
    import importlib
    import pkgutil

    import support.ops
    from support.strategies import all_params

    names = []
    for info in pkgutil.iter_modules(support.ops.__path__):
        module = importlib.import_module(f"support.ops.{info.name}")
        for name in module.PARAMS:
            assert poolops.get_op(name).torch_fn.__module__ == f"poolops.ops.{info.name}", name
            names.append(name)
    assert sorted(names) == sorted(all_params())


def test_input_kinds_are_registered_by_the_op_files():
    """Only ``x`` and ``valid`` are defined by :mod:`poolops.inputs`; every other input
    kind an op takes is defined by an op file, and known once the registry is loaded."""
    from poolops.inputs import kind

    for name in poolops.list_ops():
        for input_name in poolops.get_op(name).all_inputs:
            k = kind(input_name)
            assert k.name == input_name and k.doc
    src = (Path(poolops.__file__).parent / "inputs.py").read_text()
    for name in poolops.list_ops():
        assert f'"{name}"' not in src, name
