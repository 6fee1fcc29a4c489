"""``nn.Module`` of every registered op, generated from the registry (``poolops.nn.MaxPool``,
``poolops.nn.SpatialPyramidPool``, ...). A module only holds validated parameters;
the work is done by :mod:`poolops.functional`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from poolops.functional import apply
from poolops.registry import get_op, list_ops


class PoolOp(nn.Module):
    """Base of the generated modules: ``Module(**params)(x, *extra_inputs)``."""

    op_name: ClassVar[str]

    def __init__(self, return_indices: bool = False, **params: Any):
        super().__init__()
        self.spec = get_op(self.op_name)
        self.params = self.spec.parse(params)
        self.return_indices = return_indices

    def forward(self, *inputs: torch.Tensor):
        return apply(self.spec, self.params, inputs, self.return_indices)

    def out_features(self, channels: int) -> int:
        """Length of the flattened output per sample for ``channels`` input channels.

        Defined for ops whose output size does not depend on H and W (global,
        adaptive, spp): what a classifier head needs. ``ValueError`` otherwise.
        """
        sizes = ((7, 9, 5), (64, 48, 33))
        shapes = {self.spec.output_shape(self.params, (1, channels, *s[: self.spec.spatial_dims])) for s in sizes}
        if len(shapes) != 1:
            raise ValueError(f"{self.op_name}: output size depends on the input size")
        n = 1
        for d in next(iter(shapes))[1:]:
            n *= d
        return n

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())


def module_class(name: str) -> type[PoolOp]:
    """The module class of op ``name``."""
    return _CLASSES[name]


_CLASSES: dict[str, type[PoolOp]] = {}
for _name in list_ops():
    _spec = get_op(_name)
    _cls = type(_spec.module_name, (PoolOp,), {"op_name": _name, "__doc__": _spec.doc, "__module__": __name__})
    _CLASSES[_name] = _cls
    globals()[_spec.module_name] = _cls

__all__ = ["PoolOp", "module_class", *(get_op(n).module_name for n in list_ops())]
