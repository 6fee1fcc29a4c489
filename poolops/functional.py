"""The torch functions of every registered op, generated from the registry.

``poolops.functional.<op>(x, *extra_inputs, return_indices=False, **params)``;
parameters are validated by the op's parameter model (``ParamError``, a
``ValueError``, names the parameter) and inputs by the op's checks. Inside
``torch.onnx.export`` the call becomes the ``poolops::<op>`` custom op, which the
exporter translates with the op's ONNX builder, so any module using these
functions exports with dynamic N, H and W.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from poolops.params import OpParams, ParamError
from poolops.registry import OpSpec, get_op, list_ops


def apply(spec: OpSpec, p: OpParams, inputs: tuple, return_indices: bool = False):
    """Run ``spec`` with parsed params ``p`` on ``inputs``: ``y`` or ``(y, indices)``."""
    if len(inputs) > len(spec.all_inputs):
        raise ParamError(spec.name, "inputs", f"takes at most {len(spec.all_inputs)} tensors {list(spec.all_inputs)}")
    inputs = tuple(inputs) + (None,) * (len(spec.all_inputs) - len(inputs))
    _, wanted = spec.bind(
        [n for n, v in zip(spec.all_inputs, inputs) if v is not None], ("y", "indices") if return_indices else ("y",)
    )
    if torch.compiler.is_exporting():
        from poolops import torch_ops

        everything = dict(zip(spec.outputs, torch_ops.call(spec, inputs, p.model_dump_json())))
        outs = tuple(everything[name] for name in wanted)
    else:
        spec.check(p, *inputs)
        outs = spec.torch_fn(p, *inputs, outputs=wanted)
    return outs if return_indices else outs[0]


def call(name: str, *inputs: torch.Tensor, return_indices: bool = False, **params: Any):
    """Run the op ``name``: ``call("spp", x, levels=(1, 2, 4))``."""
    spec = get_op(name)
    return apply(spec, spec.parse(params), inputs, return_indices)


def _make(spec: OpSpec):
    def fn(*inputs: torch.Tensor, return_indices: bool = False, **params: Any):
        return apply(spec, spec.parse(params), inputs, return_indices)

    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = spec.doc
    tensor_params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in spec.inputs]
    tensor_params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY, default=None) for n in spec.optional_inputs]
    op_params = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for n, f in spec.params.model_fields.items()
    ]
    extra = [inspect.Parameter("return_indices", inspect.Parameter.KEYWORD_ONLY, default=False)]
    fn.__signature__ = inspect.Signature(tensor_params + op_params + (extra if "indices" in spec.outputs else []))
    return fn


for _name in list_ops():
    globals()[_name] = _make(get_op(_name))

__all__ = ["apply", "call", *list_ops()]
