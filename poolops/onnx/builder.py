"""How op graphs are emitted: the op builder handed to every ONNX builder, and constants.

Every ONNX builder of an op is plain Python that calls ``op.<OnnxOp>(...)`` on the
builder it is given. Two builders exist:

* onnxscript's :class:`~onnxscript.OpBuilder` (a ``GraphBuilder``), used by
  :mod:`poolops.onnx.graphs` to make the ``poolops`` domain functions of
  standalone op models;
* :class:`ExporterOps`, used inside ``torch.onnx.export`` where the exporter's own
  recorder captures the nodes (the exporter inlines custom functions anyway).

Both take ``_outputs=n`` for multi-output ops; builders only use that and the
``const_*`` helpers below, so the same code runs under either.
"""

from __future__ import annotations

from typing import Any, Sequence

OPSET = 18  # torch.onnx (dynamo) needs opset-18 bodies; every node here has an ORT CUDA kernel at 18
DOMAIN = "poolops"
DOMAIN_VERSION = 1
IR_VERSION = 10  # accepted by every onnxruntime >= 1.20

FLOAT_INF = float("inf")


class ExporterOps:
    """``op`` for builders running inside ``torch.onnx.export`` (onnxscript opset 18).

    The exporter's recorder always creates every output an op schema declares;
    ``_outputs`` only decides how many of them the builder gets back.
    Unused optional outputs are dropped after export
    (:func:`poolops.onnx.exporter.drop_unused_outputs`).
    """

    def __getattr__(self, op_type: str):
        from onnxscript import opset18

        target = getattr(opset18, op_type)

        def call(*args: Any, _outputs: int = 1, **kwargs: Any):
            result = target(*args, **kwargs)
            if isinstance(result, (tuple, list)):
                return result[0] if _outputs == 1 else tuple(result[:_outputs])
            return result

        return call


def const_i64(op, values: Sequence[int]):
    """A 1-D int64 constant."""
    return op.Constant(value_ints=[int(v) for v in values])


def const_scalar_i64(op, value: int):
    """A 0-D int64 constant."""
    return op.Constant(value_int=int(value))


def const_f32(op, value: float):
    """A 0-D float32 constant."""
    return op.Constant(value_float=float(value))


def dim(op, x, axis: int):
    """``x.shape[axis]`` as a 1-D int64 tensor of one element."""
    return op.Shape(x, start=axis, end=axis + 1)


def scalar(op, v):
    """A 1-element 1-D tensor as a 0-D scalar (what Range takes)."""
    return op.Squeeze(v, const_i64(op, [0]))


def unsqueeze(op, v, axes: Sequence[int]):
    return op.Unsqueeze(v, const_i64(op, axes))
