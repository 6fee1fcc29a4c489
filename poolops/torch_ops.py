"""``poolops::<op>`` torch custom ops: what ``torch.onnx.export`` sees of a poolops call.

During export, :func:`poolops.functional.apply` calls these instead of the torch
reference, so the exporter neither decomposes the op (PyTorch cannot export
adaptive max pooling with dynamic H and W) nor guards on input sizes. The fake
implementation gives output shapes from the op's ``output_shape`` (SymInt-safe);
the real one runs the torch reference.
"""

from __future__ import annotations

import json

import torch

from poolops.registry import OpSpec, get_op

_LIB = torch.library.Library("poolops", "DEF")
_DEFINED: dict[str, object] = {}


def schema(spec: OpSpec) -> str:
    """``(Tensor x, str params) -> (Tensor, Tensor)`` for an op with two outputs."""
    ins = ", ".join([f"Tensor {n}" for n in spec.inputs] + [f"Tensor? {n}" for n in spec.optional_inputs])
    if len(spec.outputs) == 1:
        return f"({ins}, str params) -> Tensor"
    outs = ", ".join("Tensor" for _ in spec.outputs)
    return f"({ins}, str params) -> ({outs})"


def custom_op(spec: OpSpec):
    """The ``torch.ops.poolops.<name>`` op for ``spec`` (defined on first use)."""
    if spec.name not in _DEFINED:
        _LIB.define(f"{spec.name}{schema(spec)}")

        def impl(*args):
            *inputs, params = args
            outs = spec.torch_fn(spec.parse(json.loads(params)), *inputs)
            return _unpack(tuple(o.clone() for o in outs))

        def fake(*args):
            *inputs, params = args
            x = inputs[0]
            shapes = [None if t is None else t.shape for t in inputs[1:]]
            shape = spec.shape_of(spec.parse(json.loads(params)), x.shape, *shapes)
            return _unpack(
                tuple(x.new_empty(shape, dtype=torch.int64 if name == "indices" else x.dtype) for name in spec.outputs)
            )

        _LIB.impl(spec.name, impl, "CompositeExplicitAutograd")
        torch.library.register_fake(f"poolops::{spec.name}", fake, lib=_LIB)
        _DEFINED[spec.name] = getattr(torch.ops.poolops, spec.name).default
    return _DEFINED[spec.name]


def _unpack(outs: tuple):
    return outs[0] if len(outs) == 1 else outs


def call(spec: OpSpec, inputs: tuple, params_json: str) -> tuple:
    """Call the custom op; always a tuple of the op's outputs."""
    outs = custom_op(spec)(*inputs, params_json)
    return outs if isinstance(outs, tuple) else (outs,)


def define_all() -> dict[str, object]:
    """Define the custom op of every registered op; ``{name: OpOverload}``."""
    from poolops.registry import list_ops

    return {name: custom_op(get_op(name)) for name in list_ops()}
