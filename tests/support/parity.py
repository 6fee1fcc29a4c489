"""Drawing the cases of the parity tests: parameters from the op's strategy, input
shapes the op accepts, inputs (ties, non-negative domains) and the extra inputs from their
kinds' example generators. Used by tests/poolops/test_torch_onnx_parity.py and the CUDA
parity tests."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

import poolops
from poolops.inputs import example_inputs, kind
from poolops.params import ParamError
from support.strategies import params_for, shape_of


def draw_input(data, spec, shp) -> np.ndarray:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.standard_normal(shp).astype(np.float32)
    if data.draw(st.booleans(), label="ties"):
        x = np.round(x * 2) / 2  # many equal values: tests the tie rules
    if spec.input_domain == "nonnegative":
        x = np.abs(x)
    return x


def scale_floor(t: np.ndarray) -> float:
    """1% of the input's scale: the least output scale the tolerance is taken of."""
    return max(0.01 * float(np.abs(t).max(initial=0.0)), 1e-6)


def accepts(spec, p, shp) -> bool:
    try:
        spec.check(p, np.zeros(shp, np.float32))
        return True
    except ParamError:
        return False


def draw_case(data, name: str, max_shapes: int):
    """(spec, parsed params, input shapes the op accepts): one graph, several sizes."""
    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    drawn = data.draw(st.lists(shape_of(spec), min_size=1, max_size=max_shapes), label="shapes")
    shapes = [s for s in drawn if accepts(spec, p, s)]
    assume(shapes)
    return spec, p, shapes


def draw_inputs(data, spec) -> tuple[str, ...]:
    """The graph's inputs: the required ones and a drawn subset of the optional ones
    (those whose kind has an example generator)."""
    optional = [n for n in spec.optional_inputs if kind(n).example is not None]
    chosen = [n for n in optional if data.draw(st.booleans(), label=f"with {n}")]
    return spec.inputs + tuple(chosen)


def extra_inputs(data, spec, p, names, shp) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="inputs seed"))
    return example_inputs(names[1:], shp, rng, p=p)


def torch_args(spec, arrays: dict) -> list:
    """The op's inputs after x, in order, as tensors (None for absent optional ones)."""
    return [None if arrays.get(n) is None else torch.from_numpy(arrays[n]) for n in spec.all_inputs[1:]]


def check_backward(data, spec, p, shapes, sess, where: str = "") -> None:
    """The gradient graph ``sess`` (inputs ``x``, the op's ``backward_inputs``, ``grad_y``)
    against torch autograd at each shape, with a drawn ``x`` (and the other inputs from their
    kinds' examples) and a fixed random ``grad_y``."""
    from support.runtime import assert_close

    for shp in shapes:
        x = draw_input(data, spec, shp)
        extra = extra_inputs(data, spec, p, spec.inputs, shp) if spec.backward_inputs else {}
        xt = torch.from_numpy(x).requires_grad_()
        y = spec.torch_fn(p, xt, *torch_args(spec, extra))[0]
        g = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32))
        y.backward(g)
        (grad_x,) = sess.run(None, {"x": x, **{n: extra[n] for n in spec.backward_inputs}, "grad_y": g.numpy()})
        assert_close(grad_x, xt.grad.numpy(), what=f"{spec.name} backward {p}{where} at {shp}",
                     floor=scale_floor(g.numpy()))
