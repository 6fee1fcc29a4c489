"""Every op graph stays on ONNX Runtime CUDA kernels (SPEC section 7): no node falls back to CPU."""

from __future__ import annotations

import itertools
import types
import typing

import onnx
import pytest
from onnx import TensorProto, helper

import poolops
from poolops.onnx import op_backward_model, op_model
from poolops.onnx.builder import OPSET
from support.cuda_kernels import CUDA_KERNELS, has_cuda_kernel, nodes_without_cuda_kernel


def _bumped(default):
    """A different valid-looking value for a tuple-of-ints or optional-int field, or None."""
    if isinstance(default, tuple) and default and all(isinstance(v, int) for v in default):
        return tuple(v + 1 for v in default)
    return None


def _choices(field) -> tuple[list, object]:
    """(discrete values other than the default, a bumped non-discrete value or None)."""
    ann, default = field.annotation, field.default
    if ann is bool:
        return [not default], None
    if typing.get_origin(ann) is typing.Literal:
        return [c for c in typing.get_args(ann) if c != default], None
    if default is None and typing.get_origin(ann) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        if inner == [int]:
            return [], 2
        if inner and typing.get_origin(inner[0]) is tuple:
            args = typing.get_args(inner[0])
            if args and Ellipsis not in args:
                return [], tuple(1 for _ in args)
        return [], None
    return [], _bumped(default)


def _variants(spec) -> list[dict]:
    """Default params; every combination of bool/Literal fields, each with the other
    fields at default and all bumped; each bumped field alone. Generated from the
    pydantic fields, no per-op cases."""
    fields = spec.params.model_fields
    discrete = {n: [f.default, *_choices(f)[0]] for n, f in fields.items() if _choices(f)[0]}
    bumps = {n: b for n, f in fields.items() if (b := _choices(f)[1]) is not None}
    out: list[dict] = []
    for combo in itertools.product(*discrete.values()):
        d = {n: v for n, v in zip(discrete, combo) if v != fields[n].default}
        out += [d, {**d, **bumps}]
    out += [{n: b} for n, b in bumps.items()]
    unique: list[dict] = []
    for v in out:
        if v not in unique:
            unique.append(v)
    return unique


def _cases():
    """Forward graphs with the required inputs and, for ops with optional inputs, with
    all of them too (their nodes differ); backward graphs where the op has one."""
    for name in poolops.list_ops():
        spec = poolops.get_op(name)
        for params in _variants(spec):
            label = ",".join(f"{k}={v}" for k, v in params.items()) or "default"
            yield pytest.param(name, "forward", None, params, None, id=f"{name}-fwd-{label}")
            if spec.optional_inputs:
                with_all = "+".join(spec.optional_inputs)
                yield pytest.param(name, "forward", None, params, spec.all_inputs, id=f"{name}-fwd-{label}-{with_all}")
            if not params and len(spec.outputs) > 1:
                yield pytest.param(name, "forward", ("y",), params, None, id=f"{name}-fwd-y_only")
            if spec.onnx_backward is not None:
                yield pytest.param(name, "backward", None, params, None, id=f"{name}-bwd-{label}")


@pytest.mark.parametrize(("name", "kind", "outputs", "params", "inputs"), list(_cases()))
def test_op_graph_runs_on_cuda_kernels(name, kind, outputs, params, inputs):
    try:
        if kind == "forward":
            model = op_model(name, outputs=outputs, inputs=inputs, **params)
        else:
            model = op_backward_model(name, **params)
    except ValueError as e:
        pytest.skip(f"invalid params: {e}")
    bad = nodes_without_cuda_kernel(model)
    assert bad == [], f"{name} {kind} {params}: nodes without a CUDA kernel (would run on CPU):\n" + "\n".join(bad)


def test_has_cuda_kernel_known_cases():
    assert has_cuda_kernel("MaxPool", 18)
    assert has_cuda_kernel("MaxPool", 12)
    assert has_cuda_kernel("AveragePool", 18)
    assert has_cuda_kernel("Constant", 18)  # folded into an initializer at load
    for op in ("LpPool", "MaxRoiPool", "MaxUnpool", "Multinomial", "GlobalLpPool"):
        assert not has_cuda_kernel(op, OPSET), op
        assert CUDA_KERNELS[op] == []
    assert not has_cuda_kernel("NoSuchOp", OPSET)


def test_has_cuda_kernel_types_and_versions():
    assert has_cuda_kernel("Where", 18, "float") and not has_cuda_kernel("Where", 18, "bool")
    assert has_cuda_kernel("ArgMax", 18, "float") and not has_cuda_kernel("ArgMax", 18, "int64")
    assert has_cuda_kernel("Pad", 18, "bool") and not has_cuda_kernel("Pad", 18, "int64")
    assert not has_cuda_kernel("Tile", 18, "bool")
    assert has_cuda_kernel("Equal", 18, "bool") and not has_cuda_kernel("Equal", 9, "float")
    assert has_cuda_kernel("Range", 18, "int64") and not has_cuda_kernel("Range", 10)  # Range is opset 11
    assert has_cuda_kernel("Not", 18, "bool") and not has_cuda_kernel("Not", 18, "float")
    assert has_cuda_kernel("GreaterOrEqual", 18, None)
    with pytest.raises(ValueError):
        has_cuda_kernel("Add", 18, "int32")


def _model(nodes, fn_nodes=(), opset=OPSET):
    """A model whose graph calls local function ``t.f`` (body ``fn_nodes``) when given."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    functions, opsets = [], [helper.make_opsetid("", opset)]
    if fn_nodes:
        fn = helper.make_function("t", "f", ["a"], ["b"], list(fn_nodes), [helper.make_opsetid("", opset)])
        functions, opsets = [fn], [*opsets, helper.make_opsetid("t", 1)]
    graph = helper.make_graph(list(nodes), "g", [x], [y])
    return helper.make_model(graph, opset_imports=opsets, functions=functions)


def test_nodes_without_cuda_kernel_finds_fallbacks():
    lp = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 2], name="lp")
    assert nodes_without_cuda_kernel(_model([lp])) == ["graph node 'lp': LpPool-18 (float) at opset 18"]
    ok = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])
    assert nodes_without_cuda_kernel(_model([ok])) == []

    # inside a local function, with a type only shape inference of the body knows
    body = [
        helper.make_node("IsNaN", ["a"], ["m"]),
        helper.make_node("Where", ["m", "m", "m"], ["w"], name="bool_where"),
        helper.make_node("Cast", ["w"], ["b"], to=TensorProto.FLOAT),
    ]
    bad = nodes_without_cuda_kernel(_model([helper.make_node("f", ["x"], ["y"], domain="t")], body))
    assert bad == ["function t.f node 'bool_where': Where-16 (bool) at opset 18"]

    # inside a subgraph attribute
    then = helper.make_graph(
        [helper.make_node("MaxUnpool", ["x", "x"], ["z"], kernel_shape=[2, 2], name="unpool")],
        "then",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True]))
    branch = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then, name="if")
    bad = nodes_without_cuda_kernel(_model([cond, branch]))
    assert sorted(bad) == [
        f"graph node 'if' .{b} node 'unpool': MaxUnpool-11 (float) at opset 18" for b in ("else_branch", "then_branch")
    ]


def test_table_versions_match_onnx_schemas():
    """Every recorded range starts at a real op version (catches transcription slips)."""
    for op, ranges in CUDA_KERNELS.items():
        for first, last, types_ in ranges:
            assert types_, op
            assert last is None or first <= last, op
            assert onnx.defs.get_schema(op, first).since_version == first, (op, first)
