"""RoI ops (``roi_pool``, ``roi_align``, ``deform_roi_pool``): worked examples, the torch
functions against naive loop references (tests/support/roi_reference.py), ONNX Runtime
against the torch functions on dynamic shapes (several N, C, H, W and numbers of boxes
K, 0 included, through one graph), gradients, input checks, modules and export.

These ops take required extra inputs (``boxes``, ``offsets``) from their input kinds'
examples (defined in poolops/ops/roi.py); this file is their parity suite, with
reference checks the generic parity tests (tests/poolops/test_torch_onnx_parity.py)
do not make.
"""

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
from support import roi_reference as ref
from support.ops.roi import OPS as ROI_OPS
from support.ops.roi import shape as roi_shape
from support.runtime import assert_close, session
from support.strategies import params_for

RAMP = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)


def _x(rng, shape, ties: bool) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return np.round(x * 2) / 2 if ties else x


def _extras(spec, p, shape, rng, k: int | None = None) -> dict[str, np.ndarray]:
    """The op's extra inputs from the ``poolops.inputs`` examples (``k`` boxes if given)."""
    made: dict[str, np.ndarray] = {}
    for name in spec.inputs[1:]:
        made[name] = kind(name).example(shape, rng, p=p, inputs=made)
        if name == "boxes" and k is not None:
            made[name] = np.concatenate([made[name]] * (k // len(made[name]) + 1))[:k].reshape(k, 5)
    return made


def _torch(spec, p, x, extras):
    return spec.torch_fn(p, torch.from_numpy(x), *(torch.from_numpy(v) for v in extras.values()))[0]


def _reference(name, p, x, extras):
    if name == "roi_pool":
        return ref.roi_pool(x, extras["boxes"], p.output_size, p.spatial_scale)[0]
    deform = dict(offsets=extras["offsets"], gamma=p.gamma) if name == "deform_roi_pool" else {}
    return ref.roi_align(x, extras["boxes"], p.output_size, p.spatial_scale, p.sampling_ratio, p.aligned, **deform)


def _floor(x: np.ndarray) -> float:
    return max(0.01 * float(np.abs(x).max(initial=0.0)), 1e-6)


def _onnx(name, p, x, extras):
    return session(op_model(name, **p.model_dump())).run(None, {"x": x, **extras})[0]


# ---------------------------------------------------------------- worked examples


EXAMPLES = [  # (op, boxes, offsets, params, expected): the ops' doc examples on the 4x4 ramp
    ("roi_pool", [[0, 0.5, 0.5, 2.5, 2.5]], None, dict(output_size=2), [[10, 11], [14, 15]]),
    ("roi_align", [[0, 0, 0, 2, 2]], None, dict(output_size=1, sampling_ratio=2), [[5]]),
    # aligned: corners -0.5, roi 2, adaptive grid ceil(2/1)=2: samples at 0 and 1 -> mean of x[0:2, 0:2]
    ("roi_align", [[0, 0, 0, 2, 2]], None, dict(output_size=1, aligned=True), [[2.5]]),
    # a box over the bottom-right corner: samples beyond H-1 read the last row/column
    ("roi_align", [[0, 3, 3, 4.5, 4.5]], None, dict(output_size=1, sampling_ratio=1), [[15]]),
    # entirely beyond x > W: every sample is 0
    ("roi_align", [[0, 6, 0, 8, 2]], None, dict(output_size=1, sampling_ratio=2), [[0]]),
    ("deform_roi_pool", [[0, 0, 0, 2, 2]], [0.5, 0.0], dict(output_size=1, sampling_ratio=2, aligned=False, gamma=0.5), [[5.5]]),
    ("deform_roi_pool", [[0, 0, 0, 2, 2]], [0.0, 0.5], dict(output_size=1, sampling_ratio=2, aligned=False, gamma=0.5), [[7]]),
]


@pytest.mark.parametrize("name,boxes,offsets,params,expected", EXAMPLES)
def test_worked_examples(name, boxes, offsets, params, expected):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    extras = {"boxes": np.array(boxes, np.float32)}
    if offsets is not None:
        extras["offsets"] = np.array(offsets, np.float32).reshape(1, 2, 1, 1)
    want = np.array(expected, np.float32)[None, None]
    np.testing.assert_allclose(_torch(spec, p, RAMP, extras).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(_reference(name, p, RAMP, extras), want, rtol=1e-6)
    np.testing.assert_allclose(_onnx(name, p, RAMP, extras), want, rtol=1e-6)


def test_roi_pool_rounds_half_away_from_zero():
    """C round: 0.5 -> 1, 2.5 -> 3 (torch and ONNX Round would give 0 and 2), -0.5 -> -1."""
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    boxes = np.array([[0, 0.5, 0.5, 2.5, 2.5], [0, -0.5, -0.5, 0.5, 1.5]], np.float32)
    want = np.array([21, 13], np.float32).reshape(2, 1, 1, 1)  # x[3, 3]; rows/cols -1..2 clipped: x[2, 1]
    spec = poolops.get_op("roi_pool")
    p = spec.parse(dict(output_size=1))
    for got in (_torch(spec, p, x, {"boxes": boxes}).numpy(), _onnx("roi_pool", p, x, {"boxes": boxes})):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref.roi_pool(x, boxes, (1, 1))[0], want)


def test_roi_pool_edges_follow_torchvision():
    """Empty bins (box outside the map) are 0; NaN is skipped; only -inf gives -FLT_MAX."""
    x = np.zeros((1, 3, 4, 4), np.float32)
    x[0, 0] = -np.inf
    x[0, 1, 1, 1] = np.nan
    x[0, 1, 2, 2] = 5.0
    x[0, 2] = np.nan
    boxes = np.array([[0, 0, 0, 3, 3], [0, 10, 10, 12, 12]], np.float32)
    spec = poolops.get_op("roi_pool")
    p = spec.parse(dict(output_size=1))
    want = np.array([[-ref.FLT_MAX, 5.0, -ref.FLT_MAX], [0, 0, 0]], np.float32).reshape(2, 3, 1, 1)
    for got in (_torch(spec, p, x, {"boxes": boxes}).numpy(), _onnx("roi_pool", p, x, {"boxes": boxes})):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref.roi_pool(x, boxes, (1, 1))[0], want)


def test_roi_align_sample_limits():
    """A sample at exactly -1 reads row/column 0, one at exactly H reads the last, one
    beyond either is 0 (torchvision's bilinear_interpolate), in torch, reference and ORT."""
    x = RAMP + 1
    boxes = np.array([[0, -1.5, -1.5, -0.5, -0.5], [0, 3.5, 3.5, 4.5, 4.5], [0, -1.6, -1.6, -0.6, -0.6], [0, 3.6, 0, 4.6, 1]], np.float32)
    spec = poolops.get_op("roi_align")
    p = spec.parse(dict(output_size=1, sampling_ratio=1))
    want = np.array([1, 16, 0, 0], np.float32).reshape(4, 1, 1, 1)
    np.testing.assert_array_equal(ref.roi_align(x, boxes, (1, 1), sampling_ratio=1), want)
    for got in (_torch(spec, p, x, {"boxes": boxes}).numpy(), _onnx("roi_align", p, x, {"boxes": boxes})):
        np.testing.assert_array_equal(got, want)
    zeros = np.zeros((4, 2, 1, 1), np.float32)
    got = _onnx("deform_roi_pool", poolops.get_op("deform_roi_pool").parse(dict(output_size=1, sampling_ratio=1, aligned=False)), x, {"boxes": boxes, "offsets": zeros})
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ROI_OPS)
@pytest.mark.parametrize("aligned,sampling_ratio", [(True, -1), (True, 2), (False, 0)])
def test_reversed_boxes_follow_torchvision(name, aligned, sampling_ratio):
    """x2 < x1 or y2 < y1 is legal in torchvision (roi_pool: a 1-pixel RoI; roi_align,
    aligned and adaptive: no samples, 0). ONNX Runtime's RoiAlign fails on such boxes,
    so the graph gives it x2 = x1 there (the same 0)."""
    rng = np.random.default_rng(11)
    spec = poolops.get_op(name)
    params = {"output_size": (2, 3)} | ({} if name == "roi_pool" else {"aligned": aligned, "sampling_ratio": sampling_ratio})
    p = spec.parse(params)
    x = rng.standard_normal((2, 2, 7, 9)).astype(np.float32)
    boxes = np.array([[0, 5, 1, 2, 6], [1, 1, 6, 7, 2], [1, 8, 6, 0.5, 0.5], [0, 1, 1, 6, 5]], np.float32)
    extras = {"boxes": boxes}
    if name == "deform_roi_pool":
        extras["offsets"] = rng.standard_normal((4, 2, 2, 3)).astype(np.float32)
    expected = _reference(name, p, x, extras)
    assert_close(_torch(spec, p, x, extras).numpy(), expected, what=f"{name} torch", floor=_floor(x))
    assert_close(_onnx(name, p, x, extras), expected, what=f"{name} ORT", floor=_floor(x))


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("name", ROI_OPS)
@given(data=st.data())
def test_torch_matches_loop_reference(name, data):
    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    shape = data.draw(roi_shape, label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = _x(rng, shape, data.draw(st.booleans(), label="ties"))
    extras = _extras(spec, p, shape, rng)
    expected = _reference(name, p, x, extras)
    assert_close(_torch(spec, p, x, extras).numpy(), expected, what=f"{name} {p} {shape} {extras}", floor=_floor(x))


@pytest.mark.parametrize("name", ROI_OPS)
@given(data=st.data())
def test_onnx_matches_torch_on_dynamic_shapes(name, data):
    """One graph, several (N, C, H, W) and numbers of boxes (0 included)."""
    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    sess = session(op_model(name, **p.model_dump()))
    shapes = data.draw(st.lists(roi_shape, min_size=2, max_size=3), label="shapes")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for shape in shapes:
        k = data.draw(st.none() | st.integers(0, 6), label="K")
        x = _x(rng, shape, data.draw(st.booleans(), label="ties"))
        extras = _extras(spec, p, shape, rng, k)
        expected = _torch(spec, p, x, extras).numpy()
        (actual,) = sess.run(None, {"x": x, **extras})
        assert_close(actual, expected, what=f"{name} {p} {shape} {extras}", floor=_floor(x))


@given(data=st.data())
def test_deform_with_zero_offsets_is_roi_align(data):
    """Also compares the two ONNX constructions: RoiAlign (roi_align) and the weight
    matrices (deform_roi_pool), adaptive sampling included."""
    params = data.draw(params_for("roi_align"), label="params")
    shape = data.draw(roi_shape, label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = _x(rng, shape, False)
    align, deform = poolops.get_op("roi_align"), poolops.get_op("deform_roi_pool")
    pa, pd = align.parse(params), deform.parse({**params, "gamma": 0.7})
    boxes = _extras(align, pa, shape, rng)["boxes"]
    zeros = np.zeros((len(boxes), 2, *pa.output_size), np.float32)
    want = _torch(align, pa, x, {"boxes": boxes}).numpy()
    assert_close(_torch(deform, pd, x, {"boxes": boxes, "offsets": zeros}).numpy(), want, floor=_floor(x))
    onnx_align = _onnx("roi_align", pa, x, {"boxes": boxes})
    onnx_deform = _onnx("deform_roi_pool", pd, x, {"boxes": boxes, "offsets": zeros})
    assert_close(onnx_align, want, floor=_floor(x))
    assert_close(onnx_deform, onnx_align, floor=_floor(x))


@pytest.mark.parametrize("name", ROI_OPS)
def test_no_boxes(name):
    spec = poolops.get_op(name)
    p = spec.parse(dict(output_size=(2, 3)))
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
    extras = {"boxes": np.zeros((0, 5), np.float32)}
    if "offsets" in spec.inputs:
        extras["offsets"] = np.zeros((0, 2, 2, 3), np.float32)
    tensors = [torch.from_numpy(v) for v in extras.values()]
    assert PF.call(name, torch.from_numpy(x), *tensors, output_size=(2, 3)).shape == (0, 4, 2, 3)
    assert _onnx(name, p, x, extras).shape == (0, 4, 2, 3)


# ---------------------------------------------------------------- gradients


def _jacobian_t(name, p, x, extras, g):
    """``J^T g`` of the (linear in x) reference, by pushing each basis vector through it."""
    out = np.zeros(x.size, np.float64)
    for i in range(x.size):
        e = np.zeros(x.size, np.float32)
        e[i] = 1.0
        out[i] = float((_reference(name, p, e.reshape(x.shape), extras) * g).sum())
    return out.reshape(x.shape)


@pytest.mark.parametrize("name", ["roi_align", "deform_roi_pool"])
@pytest.mark.parametrize("seed", range(3))
def test_gradient_to_x_is_the_bilinear_weights(name, seed):
    rng = np.random.default_rng(seed)
    spec = poolops.get_op(name)
    p = spec.parse(dict(output_size=(2, 2), sampling_ratio=[-1, 2, 1][seed], aligned=bool(seed % 2)))
    shape = (2, 1, 5, 6)
    x = _x(rng, shape, False)
    extras = _extras(spec, p, shape, rng)
    xt = torch.from_numpy(x).requires_grad_()
    y = spec.torch_fn(p, xt, *(torch.from_numpy(v) for v in extras.values()))[0]
    g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.from_numpy(g))
    np.testing.assert_allclose(xt.grad.numpy(), _jacobian_t(name, p, x, extras, g), rtol=1e-4, atol=1e-5)


def test_roi_pool_gradient_goes_to_the_argmax():
    rng = np.random.default_rng(3)
    spec = poolops.get_op("roi_pool")
    p = spec.parse(dict(output_size=(2, 3)))
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    boxes = np.array([[1, 0, 0, 5, 6], [0, 2, 1, 7, 4], [1, -2, 3, 3, 9]], np.float32)
    _, arg = ref.roi_pool(x, boxes, p.output_size)
    g = rng.standard_normal(arg.shape).astype(np.float32)
    want = np.zeros_like(x)
    for k, c, i, j in np.ndindex(*arg.shape):
        if arg[k, c, i, j] >= 0:
            want[int(boxes[k, 0]), c].flat[arg[k, c, i, j]] += g[k, c, i, j]
    xt = torch.from_numpy(x).requires_grad_()
    spec.torch_fn(p, xt, torch.from_numpy(boxes))[0].backward(torch.from_numpy(g))
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-6)


def test_deform_gradient_to_offsets():
    """Autograd of the bilinear samples in float64 (offsets away from the kinks at integers)."""
    rng = np.random.default_rng(5)
    p = poolops.get_op("deform_roi_pool").parse(dict(output_size=(2, 2), sampling_ratio=2, gamma=0.3))
    x = torch.from_numpy(rng.standard_normal((1, 2, 6, 7))).double()
    boxes = torch.tensor([[0, 0.7, 1.1, 4.3, 4.9]], dtype=torch.float32)
    offsets = torch.from_numpy(rng.uniform(-0.3, 0.3, (1, 2, 2, 2))).requires_grad_()
    fn = lambda o: poolops.get_op("deform_roi_pool").torch_fn(p, x, boxes, o)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (offsets,), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- inputs and parameters


BAD_INPUTS = [
    ("roi_align", np.zeros((2, 4), np.float32), None, "boxes", r"\[K, 5\]"),
    ("roi_align", np.array([[0.5, 0, 0, 1, 1]], np.float32), None, "boxes", r"integer in \[0, 2\)"),
    ("roi_pool", np.array([[2, 0, 0, 1, 1]], np.float32), None, "boxes", r"integer in \[0, 2\)"),
    ("roi_pool", np.array([[-1, 0, 0, 1, 1]], np.float32), None, "boxes", "batch index"),
    ("roi_pool", np.array([[0, 0, np.nan, 1, 1]], np.float32), None, "boxes", "finite"),
    ("roi_pool", np.array([[0, 0, 0, 1, 1]], np.int64), None, "boxes", "float32"),
    ("deform_roi_pool", np.array([[0, 0, 0, 1, 1]], np.float32), np.zeros((1, 2, 7, 6), np.float32), "offsets", r"\[1, 2, 7, 7\]"),
    ("deform_roi_pool", np.array([[0, 0, 0, 1, 1]] * 2, np.float32), np.zeros((1, 2, 7, 7), np.float32), "offsets", r"\[2, 2, 7, 7\]"),
]


@pytest.mark.parametrize("name,boxes,offsets,param,match", BAD_INPUTS)
def test_bad_inputs_are_named(name, boxes, offsets, param, match):
    x = torch.ones(2, 3, 8, 8)
    extra = [torch.from_numpy(boxes)] + ([torch.from_numpy(offsets)] if offsets is not None else [])
    with pytest.raises(ParamError, match=match) as err:
        PF.call(name, x, *extra)
    assert err.value.param == param
    with pytest.raises(ParamError):
        PN.module_class(name)()(x, *extra)


def test_missing_boxes_is_named():
    with pytest.raises(ParamError, match="'boxes'.*required input"):
        PF.roi_align(torch.ones(1, 1, 4, 4))


@pytest.mark.parametrize(
    "name,params,param",
    [
        ("roi_pool", {"spatial_scale": 0}, "spatial_scale"),
        ("roi_pool", {"output_size": 0}, "output_size"),
        ("roi_align", {"sampling_ratio": -2}, "sampling_ratio"),
        ("roi_align", {"spatial_scale": float("inf")}, "spatial_scale"),
        ("deform_roi_pool", {"gamma": float("nan")}, "gamma"),
    ],
)
def test_bad_parameters_are_named(name, params, param):
    for make in (lambda: poolops.get_op(name).parse(params), lambda: op_model(name, **params)):
        with pytest.raises(ParamError) as err:
            make()
        assert err.value.param == param


def test_output_shape_counts_boxes():
    spec = poolops.get_op("roi_align")
    p = spec.parse(dict(output_size=(3, 2)))
    assert spec.shape(p, (2, 5, 9, 9), (7, 5)) == (7, 5, 3, 2)
    assert PN.RoIAlign(output_size=(3, 2)).out_features(5) == 30


# ---------------------------------------------------------------- modules and export


class RoIHead(torch.nn.Module):
    """conv -> RoI op -> flatten: a detection-style head with x and boxes inputs."""

    def __init__(self, name: str, **params):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = PN.module_class(name)(**params)

    def forward(self, x, boxes, offsets=None):
        extra = (boxes,) if offsets is None else (boxes, offsets)
        return self.pool(torch.relu(self.conv(x)), *extra).flatten(1)


@pytest.mark.parametrize(
    "name,params",
    [
        ("roi_align", dict(output_size=(3, 3), spatial_scale=0.5, aligned=True)),
        ("roi_pool", dict(output_size=2, spatial_scale=0.5)),
        ("deform_roi_pool", dict(output_size=2, spatial_scale=0.5)),
    ],
)
def test_export_with_dynamic_boxes(name, params):
    model = RoIHead(name, **params).eval()
    spec = poolops.get_op(name)
    p = spec.parse(params)
    rng = np.random.default_rng(0)

    def inputs(n, h, w, k):
        x = rng.standard_normal((n, 3, h, w)).astype(np.float32)
        made = _extras(spec, p, (n, 4, h // 2, w // 2), rng, k)
        return [x, *made.values()]

    names = list(spec.inputs)
    proto = export(model, tuple(torch.from_numpy(a) for a in inputs(2, 16, 20, 3)), input_name=names)
    sess = session(proto)
    for n, h, w, k in [(1, 9, 13, 1), (3, 24, 18, 5), (2, 16, 20, 2)]:
        feeds = inputs(n, h, w, k)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(a) for a in feeds)).numpy()
        (actual,) = sess.run(None, dict(zip(names, feeds)))
        assert_close(actual, expected, what=f"{name} export at {(n, h, w, k)}")


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(), reason="no CUDA execution provider")
@pytest.mark.parametrize("name", ROI_OPS)
@pytest.mark.parametrize("aligned", [False, True])
def test_cuda_matches_torch(name, aligned):
    """ONNX Runtime CUDA (no CPU fallback allowed) against the torch function."""
    import onnxruntime as ort

    spec = poolops.get_op(name)
    params = dict(output_size=(3, 2), spatial_scale=0.5)
    if name != "roi_pool":
        params["aligned"] = aligned
    p = spec.parse(params)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(op_model(name, **params).SerializeToString(), so, providers=["CUDAExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape, k in [((2, 3, 17, 23), 5), ((1, 4, 64, 48), 1), ((3, 2, 5, 3), 0)]:
        x = _x(rng, shape, False)
        extras = _extras(spec, p, shape, rng, k)
        (actual,) = sess.run(None, {"x": x, **extras})
        assert_close(actual, _torch(spec, p, x, extras).numpy(), what=f"{name} on CUDA at {shape}, K={k}", floor=_floor(x))
