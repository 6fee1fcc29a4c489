"""Oriented ops (``roi_align_rotated``, ``rotation_invariant``): worked examples, the torch
functions against naive loop references (tests/support/rotated_reference.py), ONNX
Runtime against torch on dynamic shapes (several N, C, H, W and numbers of boxes, 0
included, through one graph), gradients, input checks and an exported model with a
non-square rotated RoI output run in plain ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.inputs import kind
from poolops.onnx import export, op_model
from poolops.params import ParamError
from support import roi_reference
from support import rotated_reference as ref
from support.ops.rotated import shape as roi_shape
from support.runtime import assert_close, session
from support.strategies import params_for

RAMP = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)


def _floor(x: np.ndarray) -> float:
    return max(0.01 * float(np.abs(x).max(initial=0.0)), 1e-6)


def _boxes(shape, rng, p, k: int | None = None) -> np.ndarray:
    made = kind("rboxes").example(shape, rng, p=p)
    if k is not None:
        made = np.concatenate([made] * (k // len(made) + 1))[:k].reshape(k, 6)
    return made


def _torch(p, x, boxes) -> np.ndarray:
    spec = poolops.get_op("roi_align_rotated")
    return spec.torch_fn(p, torch.from_numpy(x), torch.from_numpy(boxes))[0].numpy()


def _reference(p, x, boxes) -> np.ndarray:
    return ref.roi_align_rotated(x, boxes, p.output_size, p.spatial_scale, p.sampling_ratio, p.aligned, p.clockwise)


def _onnx(p, x, boxes) -> np.ndarray:
    return session(op_model("roi_align_rotated", **p.model_dump())).run(None, {"x": x, "rboxes": boxes})[0]


def _parse(**params):
    return poolops.get_op("roi_align_rotated").parse(params)


# ---------------------------------------------------------------- roi_align_rotated


EXAMPLES = [  # (box, params, expected) on the 4x4 ramp x[h, w] = 4h + w
    ([0, 2, 2, 2, 2, 90], dict(output_size=(1, 2), sampling_ratio=1), [[9.5, 5.5]]),  # the doc's example
    ([0, 2, 2, 2, 2, 0], dict(output_size=(1, 2), sampling_ratio=1), [[7, 8]]),
    ([0, 2, 2, 2, 2, 90], dict(output_size=(1, 2), sampling_ratio=1, clockwise=True), [[5.5, 9.5]]),
    ([0, 2, 2, 2, 2, 180], dict(output_size=(2, 1), sampling_ratio=1), [[9.5], [5.5]]),  # rows reversed
    # not aligned: centre (2, 2); 1x1 output, 2x2 samples of a 2x2 box at +-0.5 -> mean of x[1:3, 1:3]
    ([0, 2, 2, 2, 2, 0], dict(output_size=1, sampling_ratio=2, aligned=False), [[10]]),
    # entirely beyond the map: every sample is 0
    ([0, 9, 9, 1, 1, 45], dict(output_size=1), [[0]]),
]


@pytest.mark.parametrize("box,params,expected", EXAMPLES)
def test_worked_examples(box, params, expected):
    p = _parse(**params)
    boxes = np.array([box], np.float32)
    want = np.array(expected, np.float32)[None, None]
    for got in (_torch(p, RAMP, boxes), _reference(p, RAMP, boxes), _onnx(p, RAMP, boxes)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@given(data=st.data())
def test_torch_matches_loop_reference(data):
    p = _parse(**data.draw(params_for("roi_align_rotated"), label="params"))
    shape = data.draw(roi_shape, label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.standard_normal(shape).astype(np.float32)
    boxes = _boxes(shape, rng, p)
    assert_close(_torch(p, x, boxes), _reference(p, x, boxes), what=f"{p} {shape} {boxes}", floor=_floor(x))


@given(data=st.data())
def test_onnx_matches_torch_on_dynamic_shapes(data):
    """One graph, several (N, C, H, W) and numbers of boxes (0 included)."""
    p = _parse(**data.draw(params_for("roi_align_rotated"), label="params"))
    sess = session(op_model("roi_align_rotated", **p.model_dump()))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for shape in data.draw(st.lists(roi_shape, min_size=2, max_size=3), label="shapes"):
        k = data.draw(st.none() | st.integers(0, 6), label="K")
        x = rng.standard_normal(shape).astype(np.float32)
        boxes = _boxes(shape, rng, p, k)
        (actual,) = sess.run(None, {"x": x, "rboxes": boxes})
        assert_close(actual, _torch(p, x, boxes), what=f"{p} {shape} {boxes}", floor=_floor(x))


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, 0), (True, 2), (False, 0), (False, 3)])
def test_angle_zero_is_roi_align(aligned, sampling_ratio):
    """An unrotated box (cx, cy, w, h) samples as torchvision's roi_align of
    (cx - w/2, cy - h/2, cx + w/2, cy + h/2) (loop references of both)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    rboxes = np.array([[1, 4.5, 5, 3, 2, 0], [0, 2, 3, 5, 6, 0], [0, 6, 4, 8, 4, 0]], np.float32)
    boxes = np.stack([rboxes[:, 0], rboxes[:, 1] - rboxes[:, 3] / 2, rboxes[:, 2] - rboxes[:, 4] / 2,
                      rboxes[:, 1] + rboxes[:, 3] / 2, rboxes[:, 2] + rboxes[:, 4] / 2], axis=1)
    p = _parse(output_size=(3, 4), sampling_ratio=sampling_ratio, aligned=aligned)
    want = roi_reference.roi_align(x, boxes, (3, 4), 1.0, sampling_ratio, aligned)
    assert_close(_reference(p, x, rboxes), want, floor=_floor(x))
    assert_close(_torch(p, x, rboxes), want, floor=_floor(x))


def test_clockwise_negates_the_angle():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    boxes = np.array([[0, 4, 3.5, 5, 3, 30], [0, 3, 4, 2, 6, -75]], np.float32)
    flipped = boxes * np.array([1, 1, 1, 1, 1, -1], np.float32)
    a, b = _parse(output_size=(2, 3), clockwise=True), _parse(output_size=(2, 3))
    np.testing.assert_array_equal(_torch(a, x, boxes), _torch(b, x, flipped))
    np.testing.assert_array_equal(_onnx(a, x, boxes), _onnx(b, x, flipped))


def test_rotation_by_180_reverses_the_bins():
    """A box turned half way samples the same points in reverse bin order (up to the
    float32 rounding of cos and sin)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 10, 10)).astype(np.float32)
    boxes = np.array([[0, 5.2, 4.9, 6, 4, 20]], np.float32)
    turned = boxes + np.array([0, 0, 0, 0, 0, 180], np.float32)
    p = _parse(output_size=(2, 3), sampling_ratio=2)
    np.testing.assert_allclose(_torch(p, x, turned), _torch(p, x, boxes)[:, :, ::-1, ::-1], atol=1e-5)


def test_gradient_to_x_is_the_bilinear_weights():
    """Autograd of the torch function equals ``J^T g`` of the (linear in x) loop reference."""
    rng = np.random.default_rng(6)
    p = _parse(output_size=(2, 3), sampling_ratio=0)
    x = rng.standard_normal((2, 1, 5, 6)).astype(np.float32)
    boxes = np.array([[1, 2.5, 2.2, 3, 2, 35], [0, 3, 2, 4, 3, -110]], np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    y = poolops.get_op("roi_align_rotated").torch_fn(p, xt, torch.from_numpy(boxes))[0]
    g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.from_numpy(g))
    want = np.zeros(x.size)
    for i in range(x.size):
        e = np.zeros(x.size, np.float32)
        e[i] = 1
        want[i] = float((_reference(p, e.reshape(x.shape), boxes) * g).sum())
    np.testing.assert_allclose(xt.grad.numpy(), want.reshape(x.shape), rtol=1e-4, atol=1e-5)


BAD_BOXES = [
    (np.zeros((2, 5), np.float32), r"\[K, 6\]"),
    (np.array([[0.5, 1, 1, 1, 1, 0]], np.float32), r"integer in \[0, 2\)"),
    (np.array([[2, 1, 1, 1, 1, 0]], np.float32), "batch index"),
    (np.array([[0, 1, 1, -1, 1, 0]], np.float32), "negative size"),
    (np.array([[0, 1, 1, 1, 1, np.inf]], np.float32), "finite"),
    (np.array([[0, 1, 1, 1, 1, 0]], np.int64), "float32"),
    (np.array([[0, 1, 1, 40, 1, 0]], np.float32), r"2 \* 8 \+ 2"),  # adaptive sampling bound
]


@pytest.mark.parametrize("boxes,match", BAD_BOXES)
def test_bad_boxes_are_named(boxes, match):
    x = torch.ones(2, 3, 8, 8)
    with pytest.raises(ParamError, match=match) as err:
        PF.roi_align_rotated(x, torch.from_numpy(boxes))
    assert err.value.param == "rboxes"
    with pytest.raises(ParamError):
        PN.RoIAlignRotated()(x, torch.from_numpy(boxes))


def test_fixed_sampling_takes_any_box_and_missing_boxes_are_named():
    PF.roi_align_rotated(torch.ones(1, 1, 8, 8), torch.tensor([[0, 1, 1, 40, 1, 0.]]), sampling_ratio=2)
    with pytest.raises(ParamError, match="'rboxes'.*required input"):
        PF.roi_align_rotated(torch.ones(1, 1, 4, 4))
    for params, name in (({"sampling_ratio": -2}, "sampling_ratio"), ({"spatial_scale": 0}, "spatial_scale"),
                         ({"output_size": (2, 0)}, "output_size")):
        with pytest.raises(ParamError) as err:
            op_model("roi_align_rotated", **params)
        assert err.value.param == name


class RotatedHead(torch.nn.Module):
    """conv -> roi_align_rotated with a non-square output -> flatten."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = PN.RoIAlignRotated(output_size=(2, 5), spatial_scale=0.5, sampling_ratio=2)

    def forward(self, x, rboxes):
        return self.pool(torch.relu(self.conv(x)), rboxes).flatten(1)


def test_exported_model_with_non_square_output_runs_in_plain_onnx_runtime(tmp_path):
    """The issue's done-when: a model using roi_align_rotated with a non-square output,
    exported with poolops.onnx.export, loaded from disk into a plain ONNX Runtime session
    (standard ops only), matches torch at other sizes and numbers of boxes (mmcv's export
    would give 2x2 here: it passes the output height as the width)."""
    import onnx
    import onnxruntime as ort

    model = RotatedHead().eval()
    rng = np.random.default_rng(0)
    p = _parse(spatial_scale=0.5)

    def inputs(n, h, w, k):
        return rng.standard_normal((n, 3, h, w)).astype(np.float32), _boxes((n, 4, h, w), rng, p, k)

    path = tmp_path / "rotated.onnx"
    export(model, tuple(torch.from_numpy(a) for a in inputs(2, 16, 20, 3)), path, input_name=["x", "rboxes"])
    proto = onnx.load(str(path))
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w, k in [(1, 9, 13, 1), (3, 24, 18, 5), (2, 16, 20, 0)]:
        x, boxes = inputs(n, h, w, k)
        with torch.no_grad():
            expected = model(torch.from_numpy(x), torch.from_numpy(boxes)).numpy()
        (actual,) = sess.run(None, {"x": x, "rboxes": boxes})
        assert actual.shape == (k, 4 * 2 * 5)
        assert_close(actual, expected, what=f"export at {(n, h, w, k)}")


# ---------------------------------------------------------------- rotation_invariant


def _ri(p, x):
    return poolops.get_op("rotation_invariant").torch_fn(p, torch.from_numpy(x))[0].numpy()


@pytest.mark.parametrize("mode,expected", [("max", [5, 0]), ("align", [5, 2, 5, 1, 0, 0, 0, 0])])
def test_rotation_invariant_worked_example(mode, expected):
    x = np.array([1, 5, 2, 5, 0, 0, 0, 0], np.float32).reshape(1, 8, 1, 1)
    p = poolops.get_op("rotation_invariant").parse({"orientations": 4, "mode": mode})
    want = np.array(expected, np.float32).reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(_ri(p, x), want)
    np.testing.assert_array_equal(ref.rotation_invariant(x, 4, mode), want)
    np.testing.assert_array_equal(session(op_model("rotation_invariant", **p.model_dump())).run(None, {"x": x})[0], want)


@pytest.mark.parametrize("mode", ["max", "align"])
@pytest.mark.parametrize("orientations", [1, 4, 8])
def test_rotation_invariant_against_reference_and_onnx(mode, orientations):
    """Ties, NaN and -inf included; one graph at several shapes."""
    rng = np.random.default_rng(orientations)
    p = poolops.get_op("rotation_invariant").parse({"orientations": orientations, "mode": mode})
    sess = session(op_model("rotation_invariant", **p.model_dump()))
    for shape in [(2, 2 * orientations, 5, 3), (1, orientations, 1, 1), (3, 3 * orientations, 4, 7), (0, orientations, 2, 2)]:
        x = np.round(rng.standard_normal(shape) * 2).astype(np.float32) / 2
        if x.size > 8:
            x.flat[3], x.flat[5] = np.nan, -np.inf
            x[0, :orientations, 0, 0] = -np.inf
        want = ref.rotation_invariant(x, orientations, mode)
        assert_close(_ri(p, x), want, what=f"torch {shape}")
        assert_close(sess.run(None, {"x": x})[0], want, what=f"ORT {shape}")


def test_rotated_input_rotates_the_orientations():
    """What the op is for: rotating an ORN response by one orientation step shifts every
    feature's orientation channels cyclically; ``max`` is unchanged, ``align`` too."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3 * 8, 4, 4)).astype(np.float32)
    shifted = np.roll(x.reshape(2, 3, 8, 4, 4), 3, axis=2).reshape(x.shape)
    for mode in ("max", "align"):
        p = poolops.get_op("rotation_invariant").parse({"mode": mode})
        np.testing.assert_array_equal(_ri(p, shifted), _ri(p, x))


def test_rotation_invariant_checks_channels():
    with pytest.raises(ParamError, match="multiple of orientations") as err:
        PF.rotation_invariant(torch.ones(1, 12, 3, 3))
    assert err.value.param == "orientations"
    assert PF.rotation_invariant(torch.ones(1, 12, 3, 3), orientations=4).shape == (1, 3, 3, 3)
    assert PN.RotationInvariantPool(orientations=4, mode="align")(torch.ones(1, 12, 3, 3)).shape == (1, 12, 3, 3)
    with pytest.raises(ParamError):
        op_model("rotation_invariant", orientations=0)


def test_rotation_invariant_gradient_goes_to_one_maximum():
    x = torch.tensor([1.0, 3, 3, 2]).reshape(1, 4, 1, 1).requires_grad_()
    PF.rotation_invariant(x, orientations=4).sum().backward()
    assert x.grad.flatten().tolist() in ([0, 1, 0, 0], [0, 0, 1, 0])
