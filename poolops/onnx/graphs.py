"""Standalone op graphs: ``op_model`` (forward) and ``op_backward_model`` (gradient).

Each graph calls one function of the ``poolops`` domain whose body is standard
ONNX (opset 18), so a plain ``onnxruntime.InferenceSession`` runs it, on CPU or
CUDA, with dynamic N, C, H and W. No torch is needed here.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import onnx
import onnx_ir as ir
import onnxscript

from poolops.onnx.builder import DOMAIN, DOMAIN_VERSION, IR_VERSION, OPSET
from poolops.inputs import kind
from poolops.registry import OpSpec, get_op

def _memoise_op_signatures() -> None:
    """onnxscript 0.7's GraphBuilder converts an op's ``onnx.defs.OpSchema`` to an
    ``onnx_ir`` ``OpSignature`` for every node it adds: half of a graph's build time
    (spp's 722 nodes: 141 -> 77 ms CPU). The conversion depends only on the schema, so it is
    memoised by (domain, name, since_version); onnxscript's own ``values.Op`` caches it
    per op the same way."""
    sig = getattr(getattr(ir, "schemas", None), "OpSignature", None)
    convert = getattr(sig, "from_op_schema", None)
    if convert is None or getattr(convert, "_poolops_memo", False):
        return
    memo: dict[tuple[str, str, int], Any] = {}
    unbound = convert.__func__

    def from_op_schema(cls, schema):
        key = (schema.domain, schema.name, schema.since_version)
        found = memo.get(key)
        if found is None:
            found = memo[key] = unbound(cls, schema)
        return found

    from_op_schema._poolops_memo = True
    from_op_schema._poolops_original = unbound
    sig.from_op_schema = classmethod(from_op_schema)


_memoise_op_signatures()


def _function(spec: OpSpec, fname: str, trace, inputs: Sequence[str], params_json: str) -> ir.Function:
    fn = onnxscript.build_function(
        trace,
        [ir.Value(name=n) for n in inputs],
        domain=DOMAIN,
        name=fname,
        opset_imports={"": OPSET},
    )
    fn.doc_string = f"poolops op {spec.name!r} with parameters {params_json}"
    return fn


def _model(fn: ir.Function, inputs: list[ir.Value], outputs: list[ir.Value], doc: str) -> onnx.ModelProto:
    node = ir.Node(DOMAIN, fn.name, inputs, outputs=outputs, name=fn.name)
    graph = ir.Graph(
        inputs,
        outputs,
        nodes=[node],
        opset_imports={"": OPSET, DOMAIN: DOMAIN_VERSION},
        name=f"poolops_{fn.name}",
    )
    model = ir.Model(graph, ir_version=IR_VERSION, producer_name="poolops", functions=[fn])
    model.doc_string = doc
    return ir.to_proto(model)


def _input(name: str, spec: OpSpec) -> ir.Value:
    k = kind(name)
    dtype = ir.DataType.INT64 if k.dtype == "int64" else ir.DataType.FLOAT
    return ir.val(name, dtype, ir.Shape(list(spec.x_dims if name == "x" else k.dims)))


def op_model(
    name: str, outputs: Sequence[str] | None = None, inputs: Sequence[str] | None = None, **params: Any
) -> onnx.ModelProto:
    """A forward graph for op ``name``: input ``x`` ``[N, C, H, W]`` (``[N, C, L]`` or
    ``[N, C, D, H, W]`` for the 1-D and 3-D ops; plus the op's
    extra inputs), outputs ``y`` (and ``indices``, int64, for ops that have them).

    Args:
        name: a registered op.
        outputs: the outputs to compute, default all of the op's (``("y",)`` skips
            the indices).
        inputs: the graph inputs, default the op's required ones; add optional ones
            by name (``inputs=("x", "valid")``; see :mod:`poolops.inputs`); the graph
            takes them in the op's order (``OpSpec.all_inputs``).
        **params: the op's parameters (validated; ``ParamError`` names a bad one).
    """
    spec = get_op(name)
    p = spec.parse(params)
    ins, outs = spec.bind(inputs or spec.inputs, outputs or spec.outputs)
    pj = p.model_dump_json()
    by_name = lambda xs: [dict(zip(ins, xs)).get(n) for n in spec.all_inputs]  # noqa: E731 - None for absent ones
    fn = _function(spec, name, lambda op, *xs: spec.onnx_fn(op, p, *by_name(xs), outputs=outs), ins, pj)
    out_vals = [
        ir.val(o, ir.DataType.INT64 if o == "indices" else ir.DataType.FLOAT, None) for o in outs
    ]
    return _model(fn, [_input(n, spec) for n in ins], out_vals, json.dumps({"op": name, "params": json.loads(pj)}))


def op_backward_model(name: str, **params: Any) -> onnx.ModelProto:
    """The gradient graph of op ``name``: inputs ``x``, the op's ``backward_inputs`` (held
    constant, e.g. ``max_unpool``'s ``indices``) and ``grad_y`` (shaped like ``y``), output
    ``grad_x``, the gradient of ``sum(y * grad_y)`` with respect to ``x``."""
    spec = get_op(name)
    if spec.onnx_backward is None:
        raise ValueError(f"{name}: no ONNX backward graph")
    p = spec.parse(params)
    pj = p.model_dump_json()
    names = ("x", *spec.backward_inputs, "grad_y")
    fn = _function(spec, f"{name}_grad", lambda op, x, *rest: spec.onnx_backward(op, p, x, rest[-1], *rest[:-1]),
                   names, pj)
    inputs = [_input(n, spec) for n in names[:-1]] + [ir.val("grad_y", ir.DataType.FLOAT, None)]
    out = [ir.val("grad_x", ir.DataType.FLOAT, ir.Shape(list(spec.x_dims)))]
    return _model(fn, inputs, out, json.dumps({"op": name, "backward": True, "params": json.loads(pj)}))
