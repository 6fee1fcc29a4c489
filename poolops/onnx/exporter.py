"""Export any ``nn.Module`` containing poolops layers to ONNX with dynamic N, H and W.

``torch.onnx.export`` (dynamo) traces the module; each poolops call appears as a
``poolops::<op>`` custom op (:mod:`poolops.torch_ops`) and is translated by the
op's ONNX builder, the same code that makes the ``poolops`` domain functions of
:func:`poolops.onnx.op_model` (the exporter inlines function bodies, so the
exported graph holds their nodes directly).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from typing import Sequence

import onnx
import onnx_ir as ir
import torch

from poolops.onnx.builder import OPSET, ExporterOps
from poolops.onnx.stock import UnsupportedPooling
from poolops.onnx.stock import stock_pooling as _stock
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


def decompose_for_cuda(model: ir.Model) -> None:
    """Rewrite nodes that ONNX Runtime's CUDA provider has no kernel for into exact
    equivalents that it has: ``HardSwish(x)`` (MobileNetV3's activation) becomes
    ``x * HardSigmoid(x, alpha=1/6, beta=1/2)``, its definition."""
    graph = model.graph
    for node in list(graph):
        if node.op_type != "HardSwish" or node.domain not in ("", "ai.onnx"):
            continue
        x = node.inputs[0]
        gate = ir.node("HardSigmoid", [x], {"alpha": 1.0 / 6.0, "beta": 0.5}, metadata_props=dict(node.metadata_props))
        mul = ir.node("Mul", [x, gate.outputs[0]], metadata_props=dict(node.metadata_props))
        ir.convenience.replace_nodes_and_values(graph, node, [node], [gate, mul], [node.outputs[0]], [mul.outputs[0]])


def export(
    module: torch.nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | os.PathLike | None = None,
    *,
    input_name: str | Sequence[str] = "x",
    output_names: Sequence[str] | None = None,
    dynamic: bool = True,
    stock_pooling: bool = True,
    check_sizes: Sequence[tuple[int, int]] | None | bool = True,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) to ONNX; N, H and W of the input are dynamic.

    Args:
        module: any module; poolops layers and functions export exactly.
        example_input: ``Tensor[N, C, H, W]`` used for tracing, or a tuple of inputs
            whose first is that (e.g. ``(x, valid)`` with ``valid: Tensor[N, 2]``).
        path: where to save (optional).
        input_name: the graph input's name (a sequence of names for several inputs).
        output_names: names for the graph outputs.
        dynamic: make N, H and W dynamic (named ``N``, ``H``, ``W``; ``N``, ``L`` for a
            3-D input ``[N, C, L]``, ``N``, ``D``, ``H``, ``W`` for a 5-D one; every other
            input's first axis is dynamic too: N for ``valid``, K for ``boxes``).
        stock_pooling: export PyTorch's own 2-D pooling (``nn.MaxPool2d``,
            ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``, ``nn.AdaptiveMaxPool2d``,
            ``nn.LPPool2d`` and their ``F.`` functions) through the poolops ops of the
            same semantics (:mod:`poolops.onnx.stock`), so that unmodified models keep
            dynamic H and W; False leaves them to PyTorch's exporter.
        check_sizes: with ``dynamic``, run the graph against ``module`` at these
            ``(h, w)`` sizes (True: two sizes unlike the example's,
            :func:`poolops.onnx.dynamic.probe_sizes`; False or None: no check) and raise
            :class:`poolops.onnx.dynamic.SizePinned`, naming the module and op, if it
            fails or differs there. Only for a single 4-D input tensor.

    Raises:
        SizePinned: the model or its graph only works at the example's size.
        UnsupportedPooling: a stock pooling call no poolops op reproduces exactly.

    Returns:
        The checked ``onnx.ModelProto`` (opset 18, IR version 10).
    """
    module = module.eval()
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    # x's dynamic dims by its rank: [N, C, H, W], or [N, C, L] / [N, C, D, H, W] for the 1-D / 3-D ops
    dims = {3: {0: "N", 2: "L"}, 5: {0: "N", 2: "D", 3: "H", 4: "W"}}.get(args[0].dim(), {0: "N", 2: "H", 3: "W"})
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = tuple(
            {i: torch.export.Dim.DYNAMIC for i in (dims if k == 0 else (0,))} for k in range(len(args))
        )

    with torch.no_grad(), (_stock() if stock_pooling else contextlib.nullcontext()):
        try:
            program = _torch_export(module, args, names, output_names, dynamic_shapes)
        except Exception as e:
            unsupported = _cause(e, UnsupportedPooling)
            if unsupported is not None:
                raise UnsupportedPooling(str(unsupported)) from e
            if dynamic and "inferred a static shape" in _all_text(e):
                raise _pinned_error(module, args, dynamic_shapes) from e
            raise
    model = program.model
    drop_unused_outputs(model)
    decompose_for_cuda(model)
    if dynamic:
        _rename_input_dims(model, dims)
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto)
    if dynamic and check_sizes and len(args) == 1 and args[0].dim() == 4:  # the size probe is 2-D
        from poolops.onnx.dynamic import raise_if_pinned

        raise_if_pinned(module, proto, args[0], None if check_sizes is True else list(check_sizes))
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _torch_export(module, args, names, output_names, dynamic_shapes):
    return torch.onnx.export(
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


def _cause(e: BaseException | None, kind: type) -> BaseException | None:
    for _ in range(10):
        if e is None or isinstance(e, kind):
            return e
        e = e.__cause__ or e.__context__
    return None


def _all_text(e: BaseException) -> str:
    parts = []
    while e is not None and len(parts) < 10:
        parts.append(str(e))
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


def _pinned_error(module, args, dynamic_shapes) -> Exception:
    from poolops.onnx.dynamic import SizePinned, specialization_sites

    try:
        sites = specialization_sites(module, args, dynamic_shapes)
    except Exception:  # noqa: BLE001 - the diagnosis must not hide the real error
        sites = []
    h, w = args[0].shape[2], args[0].shape[3]
    where = "; ".join(sites) if sites else "a size read as a Python int, or an op torch.export cannot keep dynamic"
    return SizePinned(
        f"tracing fixed H or W to the example's size ({h}x{w}) at {where}. Keep sizes symbolic there "
        "(use x.shape[2:] as it is, not int(...)), or export with dynamic=False for this one size")


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
