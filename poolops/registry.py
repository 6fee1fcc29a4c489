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
from typing import Any, Callable, Iterable, Mapping, Sequence

from poolops.params import OpParams, ParamError, parse_params, quote


@dataclass(frozen=True)
class Cost:
    """What running an op would take, known from its parameters and input shapes alone.

    Attributes:
        output_elements: elements of the requested outputs together: ``y``, ``indices``
            if asked, and ``grad_input`` (x's size) for a backward pass.
        work_elements: elements of the largest tensor any node of the op's graph(s)
            produces (the forward graph, and the backward graph when asked; a node's
            outputs together), in float32 units: an int64 element counts 2, a bool 1.
            An upper bound, for refusing requests before any work.
    """

    output_elements: int
    work_elements: int


X_DIMS: dict[int, tuple[str, ...]] = {
    1: ("N", "C", "L"),
    2: ("N", "C", "H", "W"),
    3: ("N", "C", "D", "H", "W"),
}
"""The dims of ``x`` by the number of spatial axes (``OpSpec.spatial_dims``)."""

SHAPE_WORK = 64
"""The least ``work_elements``: every graph makes a few shape and pad vectors (int64)."""

WorkRule = Callable[[Any, Mapping[str, tuple[int, ...]], tuple[str, ...], bool], int]
"""``(p, shapes, outputs, backward) -> int``: an op's largest intermediate, see :class:`Cost`."""


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
        onnx_backward: ``(op, p, x, grad_y) -> grad_x`` or None; ``(op, p, x, grad_y,
            *backward_inputs)`` for an op whose gradient graph takes other inputs.
        backward_inputs: the inputs besides ``x`` that the gradient graph takes, held
            constant (``max_unpool``'s ``indices``): graph inputs ``x``, these, ``grad_y``.
        output_shape: ``(p, x_shape) -> tuple`` of the ``y`` output (works on
            ints and on torch SymInts; ``indices`` has the same shape). An op whose
            output depends on other inputs takes their shapes too,
            ``(p, x_shape, *extra_shapes)`` (None for an absent optional input);
            call it through :meth:`OpSpec.shape`.
        module_name: class name of the ``poolops.nn`` module.
        doc: a short description with a worked example.
        inputs: names of the required tensor inputs (ONNX graph inputs, in order);
            each a kind of :mod:`poolops.inputs`.
        optional_inputs: names of optional tensor inputs, after the required ones
            (``None`` when not given; ``op_model(..., inputs=...)`` adds them).
        outputs: names of the outputs (``y`` first).
        check_input: ``(p, x) -> None`` raising :class:`ParamError` for inputs
            the op cannot take (shape, and values where the op needs it);
            ``x`` is a numpy array or a torch tensor. The other inputs are checked
            against their kinds (:func:`poolops.inputs.check_inputs`). A check that
            needs the other inputs too takes them, ``(p, x, *extra)`` (in
            ``all_inputs[1:]`` order, None for absent ones), and runs after their
            kind checks.
        param_dims: ``(p) -> {dim name: size}``: the symbolic dims of the op's other
            inputs that its parameters fix (an input kind ``[K, 2, oh, ow]`` with
            ``oh, ow`` the op's output size), checked exactly; None: none.
        family: a grouping for docs and the UI (window, global, adaptive, ...).
        input_domain: ``real`` or ``nonnegative`` (stochastic pooling).
        work: the op's :data:`WorkRule`: ``(p, shapes, outputs, backward) -> int``, an
            upper bound of the largest tensor its graphs produce (see :class:`Cost`),
            from ``shapes`` (``{"x": (N, C, H, W), <other input>: shape, ...}``, plain
            ints, not yet checked), in O(1) of the parameter values; through
            :meth:`OpSpec.cost`.
        torch_stock: the stock PyTorch call ``torch_fn`` amounts to (``F.max_pool2d``),
            what a user would otherwise call and ``poolops bench ops`` times; empty where
            PyTorch has no such function (``torch_fn`` is then poolops' own).
        bench_params: ``(label, params)`` pairs: parameter sets besides the defaults that
            ``poolops bench ops`` (and the CUDA bench) time as rows of their own, labelled
            ``"<op> (<label>)"``, for variants whose graphs differ (``se``'s ``pooled``,
            ``max``'s ``tf_same``); the torch side runs with the same parameters.
        spatial_dims: how many spatial axes ``x`` has: 2 (``[N, C, H, W]``, every op
            but the 1-D and 3-D variants), 1 (``[N, C, L]``) or 3 (``[N, C, D, H, W]``);
            see :data:`X_DIMS` and :attr:`x_dims`.
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
    param_dims: Callable[[Any], Mapping[str, int]] | None = None
    family: str = field(default="")
    input_domain: str = "real"  # or "nonnegative": what inputs the op is defined on
    work: WorkRule | None = None
    torch_stock: str = ""  # the stock PyTorch call torch_fn makes ("F.max_pool2d"); "" where PyTorch has none
    backward_inputs: tuple[str, ...] = ()  # inputs besides x the gradient graph takes (held constant)
    spatial_dims: int = 2  # 1: x is [N, C, L]; 3: [N, C, D, H, W]
    bench_params: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # extra rows of poolops bench ops

    @property
    def x_dims(self) -> tuple[str, ...]:
        """The symbolic dims of ``x``: ``("N", "C", "H", "W")`` for a 2-D op (:data:`X_DIMS`)."""
        return X_DIMS[self.spatial_dims]

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
        if _takes_more_than_two(self.output_shape):
            return self.output_shape(p, x_shape, *extra_shapes)
        return self.output_shape(p, x_shape)

    def bind(
        self, inputs: Iterable[str], outputs: Sequence[str] = ("y",), backward: bool = False
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Check a run's tensors by name: the inputs given (``x`` and any others), the
        outputs asked for and, with ``backward``, that the gradient graph can take them.

        The one such check of every face: the torch functions
        (:func:`poolops.functional.apply`), the ONNX graphs (:func:`poolops.onnx.op_model`),
        :meth:`cost` and the service's engine call it.

        Returns:
            The inputs in ``all_inputs`` order (the graph's inputs) and the outputs.

        Raises:
            ParamError: naming an unknown or missing input, ``outputs`` (an unknown output,
                or no ``y``) or ``backward``.
        """
        given = list(inputs)
        twice = [n for n in given if given.count(n) > 1]
        if twice:
            raise ParamError(self.name, twice[0], "is given twice")
        unknown = [n for n in given if n not in self.all_inputs]
        if unknown:
            raise ParamError(self.name, unknown[0], f"is not an input of this op; it takes {list(self.all_inputs)}")
        missing = [n for n in self.inputs if n not in given]
        if missing:
            from poolops.inputs import kind

            raise ParamError(
                self.name, missing[0], f"is a required input ({kind(missing[0]).doc}); the op takes {list(self.inputs)}"
            )
        outs = tuple(outputs)
        bad = [o for o in outs if o not in self.outputs]
        if bad:
            hint = " (no indices: return_indices is not available)" if "indices" in bad else ""
            raise ParamError(self.name, "outputs", f"unknown outputs {bad}; the op has {list(self.outputs)}{hint}")
        if "y" not in outs:
            raise ParamError(self.name, "outputs", f"must include 'y', got {list(outs)}")
        if backward:
            if self.onnx_backward is None:
                served = [n for n in list_ops() if _REGISTRY[n].onnx_backward is not None]
                raise ParamError(self.name, "backward", f"this op has no backward graph; ops with one: {served}")
            others = [n for n in given if n != "x" and n not in self.backward_inputs]
            if others:
                takes = " and ".join(["x", *self.backward_inputs]) if self.backward_inputs else "x alone"
                raise ParamError(
                    self.name, "backward", f"backward takes {takes} (its graph has no other inputs), not {others}"
                )
        return tuple(n for n in self.all_inputs if n in given), outs

    def cost(
        self,
        p: OpParams | dict[str, Any] | None,
        shapes: Mapping[str, Sequence[int]],
        outputs: Sequence[str] = ("y",),
        backward: bool = False,
    ) -> Cost:
        """Output and work elements of a run, from the parameters and input shapes alone.

        Callable before :meth:`check` (nothing is allocated, plain ints, O(1) in the
        parameter values): ``shapes`` must give ``x`` as 4 non-negative ints and each
        other input given to the op by name; the shapes need not be valid for the op.

        Args:
            p: the parameters (parsed, or a dict to parse).
            shapes: ``{"x": (N, C, H, W), "boxes": (K, 5), ...}``.
            outputs: the forward outputs asked for (``("y", "indices")`` for indices).
            backward: whether the gradient ``grad_input`` (x's shape) is asked for too.

        Raises:
            ParamError: bad parameters, a malformed or missing shape, an unknown
                output, or ``backward`` for an op without a backward graph.
        """
        p = self.parse(p)
        _, outs = self.bind(shapes, outputs, backward)
        dims = self._cost_shapes(shapes)
        if self.work is None:
            raise ParamError(self.name, "work", "this op states no cost rule")
        y = _numel(max(int(d), 0) for d in self.shape(p, dims["x"], *(dims.get(n) for n in self.all_inputs[1:])))
        out_units = [y] + ([2 * y] if "indices" in outs else [])
        x = _numel(dims["x"]) if backward else 0
        output_elements = y * len(out_units) + x
        work = max(int(self.work(p, dims, outs, bool(backward))), *out_units, x, SHAPE_WORK)
        return Cost(output_elements=output_elements, work_elements=work)

    def _cost_shapes(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
        """``shapes`` (of inputs :meth:`bind` has checked) as tuples of non-negative ints,
        each of its kind's rank; ParamError else."""
        from poolops.inputs import kind

        out: dict[str, tuple[int, ...]] = {}
        for name, shape in shapes.items():
            rank = len(self.x_dims) if name == "x" else len(kind(name).dims)
            try:
                dims = tuple(_as_dim(d) for d in shape) if len(shape) == rank else None
            except (TypeError, ValueError):
                dims = None
            if dims is None:
                raise ParamError(
                    self.name, name, f"expected a shape of {rank} non-negative integers, got {quote(shape)}"
                )
            out[name] = dims
        return out

    def check(self, p: OpParams, x: Any, *extra: Any) -> None:
        """Check that ``x`` is ``[N, C, H, W]`` (``[N, C, L]``, ``[N, C, D, H, W]`` for
        the 1-D and 3-D ops: :attr:`x_dims`) and acceptable to this op, and each other
        input given (``extra``, in ``all_inputs[1:]`` order; None or left out: not
        checked) against its kind."""
        shape = tuple(x.shape)
        dims = self.x_dims
        if len(shape) != len(dims):
            raise ParamError(
                self.name, "x", f"expected a {len(dims)}-D tensor [{', '.join(dims)}], got shape {shape}"
            )
        if any(d < 1 for d in shape[2:]):
            raise ParamError(self.name, "x", f"{' and '.join(dims[2:])} must be at least 1, got shape {shape}")
        takes_more = self.check_input is not None and _takes_more_than_two(self.check_input)
        if self.check_input is not None and not takes_more:
            self.check_input(p, x)
        from poolops.inputs import check_inputs

        param_dims = self.param_dims(p) if self.param_dims is not None else None
        check_inputs(self.name, p, x, dict(zip(self.all_inputs[1:], extra)), param_dims)
        if takes_more:
            more = tuple(extra) + (None,) * (len(self.all_inputs) - 1 - len(extra))
            self.check_input(p, x, *more)


def _takes_more_than_two(fn: Callable) -> bool:
    """Whether ``fn`` takes more than ``(p, x)`` (the other inputs or their shapes)."""
    params = inspect.signature(fn).parameters.values()
    return len(params) > 2 or any(q.kind is q.VAR_POSITIONAL for q in params)


def _as_dim(d: Any) -> int:
    """A dimension as a non-negative Python int (``ValueError`` else; bools refused)."""
    if isinstance(d, bool) or not hasattr(d, "__index__"):
        raise TypeError(d)
    v = int(d.__index__())
    if v < 0:
        raise ValueError(v)
    return v


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


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


class UnknownOp(ValueError):
    """No op of that name is registered; ``name`` is the name asked for."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown op {name!r}; known ops: {', '.join(_REGISTRY)}")


def get_op(name: str) -> OpSpec:
    """The :class:`OpSpec` named ``name``; :class:`UnknownOp` (a ``ValueError``) listing
    the known ops if none."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOp(name) from None
