"""The op registry: each pooling op is defined once, as an :class:`OpSpec`.

An op file under ``poolops/ops/`` builds one ``OpSpec`` per op and calls
:func:`register`. From that single entry the op reaches the torch functions
(:mod:`poolops.functional`), the modules (:mod:`poolops.nn`), the ONNX graphs
(:mod:`poolops.onnx`), the benchmarks, the tests and (later) the API and UI.

This module and the op files import no torch at module level: the serving
process uses the registry (parameters, docs, ONNX builders) without torch.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from poolops.params import OpParams, ParamError, parse_params


@dataclass(frozen=True)
class OpSpec:
    """One pooling op.

    Attributes:
        name: registry name (``max``, ``spp``, ...); also the ONNX function name.
        params: the pydantic parameter model.
        torch_fn: ``(p, *inputs, outputs=...) -> tuple[Tensor, ...]``, one tensor per
            requested output name (default all of ``outputs``); differentiable in ``y``.
        onnx_fn: ``(op, p, *inputs, outputs=...) -> tuple[Value, ...]``: emits the
            forward graph with ``op`` (an onnxscript op builder), returning one value
            per requested output name.
        onnx_backward: ``(op, p, x, grad_y) -> grad_x`` or None.
        output_shape: ``(p, x_shape) -> tuple`` of the ``y`` output (works on
            ints and on torch SymInts; ``indices`` has the same shape). An op whose
            output depends on other inputs takes their shapes too,
            ``(p, x_shape, *extra_shapes)`` (None for an absent optional input);
            call it through :meth:`OpSpec.shape`.
        module_name: class name of the ``poolops.nn`` module.
        doc: a short description with the seed's example.
        inputs: names of the required tensor inputs (ONNX graph inputs, in order);
            each a kind of :mod:`poolops.inputs`.
        optional_inputs: names of optional tensor inputs, after the required ones
            (``None`` when not given; ``op_model(..., inputs=...)`` adds them).
        outputs: names of the outputs (``y`` first).
        check_input: ``(p, x) -> None`` raising :class:`ParamError` for inputs
            the op cannot take (shape, and values where the op needs it);
            ``x`` is a numpy array or a torch tensor. The other inputs are checked
            against their kinds (:func:`poolops.inputs.check_inputs`).
        family: a grouping for docs and the UI (window, global, adaptive, ...).
        input_domain: ``real`` or ``nonnegative`` (stochastic pooling).
    """

    name: str
    params: type[OpParams]
    torch_fn: Callable[..., tuple]
    onnx_fn: Callable[..., tuple]
    onnx_backward: Callable[..., Any] | None
    output_shape: Callable[[Any, Sequence[Any]], tuple]
    module_name: str
    doc: str
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("y",)
    optional_inputs: tuple[str, ...] = ()
    check_input: Callable[[Any, Any], None] | None = None
    family: str = field(default="")
    input_domain: str = "real"  # or "nonnegative": what inputs the op is defined on

    def parse(self, params: dict[str, Any] | OpParams | None = None) -> OpParams:
        """Validated parameters; raises :class:`ParamError` naming the bad one."""
        if isinstance(params, self.params):
            return params
        return parse_params(self.name, self.params, dict(params or {}))

    @property
    def all_inputs(self) -> tuple[str, ...]:
        return self.inputs + self.optional_inputs

    def shape(self, p: OpParams, x_shape: Sequence[Any], *extra_shapes: Any) -> tuple:
        """The ``y`` shape: ``output_shape``, given the other inputs' shapes (in
        ``all_inputs[1:]`` order, None for absent ones) if it takes them."""
        params = inspect.signature(self.output_shape).parameters.values()
        takes_more = len(params) > 2 or any(q.kind is q.VAR_POSITIONAL for q in params)
        return self.output_shape(p, x_shape, *extra_shapes) if takes_more else self.output_shape(p, x_shape)

    def check(self, p: OpParams, x: Any, *extra: Any) -> None:
        """Check that ``x`` is ``[N, C, H, W]`` and acceptable to this op, and each
        other input given (``extra``, in ``all_inputs[1:]`` order; None or left out:
        not checked) against its kind."""
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ParamError(
                self.name, "x", f"expected a 4-D tensor [N, C, H, W], got shape {shape}"
            )
        if shape[2] < 1 or shape[3] < 1:
            raise ParamError(self.name, "x", f"H and W must be at least 1, got shape {shape}")
        if self.check_input is not None:
            self.check_input(p, x)
        from poolops.inputs import check_inputs

        check_inputs(self.name, p, x, dict(zip(self.all_inputs[1:], extra)))


_REGISTRY: dict[str, OpSpec] = {}
_LOADED = False


def register(spec: OpSpec) -> OpSpec:
    """Add an op to the registry (called by the op files)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"op {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    """Import every module of ``poolops.ops`` once, so that each registers its ops."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import poolops.ops as ops_pkg

    for info in sorted(pkgutil.iter_modules(ops_pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"poolops.ops.{info.name}")


def list_ops() -> list[str]:
    """Names of all registered ops, in registration order."""
    _load()
    return list(_REGISTRY)


def get_op(name: str) -> OpSpec:
    """The :class:`OpSpec` named ``name``; ``ValueError`` listing the known ops if none."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(_REGISTRY)}") from None
