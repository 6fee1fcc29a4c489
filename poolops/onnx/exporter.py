"""Export any ``nn.Module`` containing poolops layers to ONNX with dynamic N, H and W.

``torch.onnx.export`` (dynamo) traces the module; each poolops call appears as a
``poolops::<op>`` custom op (:mod:`poolops.torch_ops`) and is translated by the
op's ONNX builder, the same code that makes the ``poolops`` domain functions of
:func:`poolops.onnx.op_model` (the exporter inlines function bodies, so the
exported graph holds their nodes directly).
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Sequence

import onnx
import onnx_ir as ir
import torch

from poolops.onnx.builder import OPSET, ExporterOps
from poolops.registry import OpSpec, get_op, list_ops


def _translation(spec: OpSpec):
    """The exporter's translation function for ``poolops::<spec.name>``."""

    def translate(*args):
        *inputs, params = args
        p = spec.parse(json.loads(params))
        outs = spec.onnx_fn(ExporterOps(), p, *inputs, outputs=spec.outputs)
        return outs[0] if len(outs) == 1 else outs

    # The exporter reads the signature to tell tensor inputs from attributes.
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in spec.all_inputs]
    params.append(inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str))
    translate.__signature__ = inspect.Signature(params)
    translate.__annotations__ = {"params": str}
    translate.__name__ = f"poolops_{spec.name}"
    return translate


def translation_table() -> dict:
    """``{torch.ops.poolops.<op>.default: translation}`` for every registered op."""
    from poolops.torch_ops import define_all

    ops = define_all()
    return {ops[name]: _translation(get_op(name)) for name in list_ops()}


def drop_unused_outputs(model: ir.Model) -> None:
    """Remove trailing node outputs nobody reads (the exporter creates every optional
    output, and e.g. an unused MaxPool ``Indices`` output still costs time)."""
    graph_outputs = set(id(v) for v in model.graph.outputs)
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        keep = len(node.outputs)
        while keep > 1:
            v = node.outputs[keep - 1]
            if v.uses() or id(v) in graph_outputs:
                break
            keep -= 1
        if keep < len(node.outputs):
            node.resize_outputs(keep)


def export(
    module: torch.nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | os.PathLike | None = None,
    *,
    input_name: str | Sequence[str] = "x",
    output_names: Sequence[str] | None = None,
    dynamic: bool = True,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) to ONNX; N, H and W of the input are dynamic.

    Args:
        module: any module; poolops layers and functions export exactly.
        example_input: ``Tensor[N, C, H, W]`` used for tracing, or a tuple of inputs
            whose first is that (e.g. ``(x, valid)`` with ``valid: Tensor[N, 2]``).
        path: where to save (optional).
        input_name: the graph input's name (a sequence of names for several inputs).
        output_names: names for the graph outputs.
        dynamic: make N, H and W dynamic (named ``N``, ``H``, ``W``; every other
            input's first axis is dynamic too: N for ``valid``, K for ``boxes``).

    Returns:
        The checked ``onnx.ModelProto`` (opset 18, IR version 10).
    """
    module = module.eval()
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    dims = {0: "N", 2: "H", 3: "W"}
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = tuple(
            {i: torch.export.Dim.DYNAMIC for i in (dims if k == 0 else (0,))} for k in range(len(args))
        )
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=list(output_names) if output_names else None,
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=translation_table(),
            verbose=False,
            optimize=True,
        )
    model = program.model
    drop_unused_outputs(model)
    if dynamic:
        _rename_input_dims(model, dims)
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _rename_input_dims(model: ir.Model, names: dict[int, str]) -> None:
    """Call the input's symbolic dims N, H, W (the exporter names them s0, s1, ...)."""
    x = model.graph.inputs[0]
    if x.shape is None:
        return
    renames = {}
    for axis, name in names.items():
        d = x.shape[axis]
        if isinstance(d, ir.SymbolicDim) and d.value is not None:
            renames[d.value] = name
    for value in _all_values(model.graph):
        if value.shape is None:
            continue
        new = [
            ir.SymbolicDim(renames[d.value]) if isinstance(d, ir.SymbolicDim) and d.value in renames else d
            for d in value.shape
        ]
        value.shape = ir.Shape(new)


def _all_values(graph: ir.Graph):
    yield from graph.inputs
    for node in graph:
        yield from node.outputs
