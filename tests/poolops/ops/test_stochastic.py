"""Stochastic pooling: torch reference vs ONNX Runtime (CPU), forward and backward."""

from __future__ import annotations

import functools
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolops
from poolops.onnx import op_backward_model, op_model
from poolops.ops import stochastic as sto
from poolops.params import ParamError
from support.cuda_kernels import nodes_without_cuda_kernel

SPEC = poolops.get_op("stochastic")
EXAMPLE_X = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=256)
def _fwd(items):
    return _session(op_model("stochastic", **dict(items)))


@functools.lru_cache(maxsize=256)
def _bwd(items):
    return _session(op_backward_model("stochastic", **dict(items)))


def _key(params):
    return tuple(sorted(params.items()))


def ort_forward(x, **params):
    return _fwd(_key(params)).run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]


def ort_backward(x, g, **params):
    feeds = {"x": np.ascontiguousarray(x, np.float32), "grad_y": np.ascontiguousarray(g, np.float32)}
    return _bwd(_key(params)).run(None, feeds)[0]


def torch_forward_backward(x, g, **params):
    p = SPEC.parse(params)
    xt = torch.tensor(x, requires_grad=True)
    (y,) = SPEC.torch_fn(p, xt)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), xt.grad.numpy()


def _close(actual, expected, tol=1e-5):
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------- the worked example


def test_worked_example_probabilities_and_eval():
    p = SPEC.parse({})
    probs = sto.torch_probabilities(p, torch.tensor(EXAMPLE_X))
    np.testing.assert_allclose(probs.reshape(-1).numpy(), [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    (y,) = SPEC.torch_fn(p, torch.tensor(EXAMPLE_X))
    assert y.shape == (1, 1, 1, 1) and y.item() == pytest.approx(3.0)
    assert ort_forward(EXAMPLE_X).item() == pytest.approx(3.0)
    # eval is the expectation of train: sum(p * x)
    assert float((probs.reshape(-1) * torch.tensor([1.0, 2, 3, 4])).sum()) == pytest.approx(3.0)
    for text in ("(1, 2, 3, 4)", "0.1, 0.2, 0.3, 0.4", "3.0", "hash"):
        assert text in SPEC.doc


def test_registration():
    assert SPEC.family == "window" and SPEC.module_name == "StochasticPool"
    assert SPEC.outputs == ("y",) and SPEC.inputs == ("x",)
    p = SPEC.parse({"kernel": 3, "stride": (1, 2)})
    assert p.strides == (1, 2) and p.mode == "eval" and p.seed == 0 and p.negative == "error"
    assert SPEC.output_shape(p, (2, 3, 10, 9)) == (2, 3, 8, 4)
    (y,) = SPEC.torch_fn(p, torch.rand(2, 3, 10, 9))
    assert tuple(y.shape) == (2, 3, 8, 4)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"kernel": 0}, "kernel"),
        ({"stride": (1, 0)}, "stride"),
        ({"mode": "sample"}, "mode"),
        ({"seed": -1}, "seed"),
        ({"negative": "abs"}, "negative"),
        ({"padding": 1}, "padding"),
    ],
)
def test_bad_params(params, name):
    with pytest.raises(ParamError) as exc:
        SPEC.parse(params)
    assert exc.value.param == name


def test_kernel_larger_than_input():
    p = SPEC.parse({"kernel": (3, 2)})
    x = np.ones((1, 1, 2, 5), np.float32)
    with pytest.raises(ParamError) as exc:
        SPEC.check(p, x)
    assert exc.value.param == "kernel"
    with pytest.raises(ParamError):
        SPEC.torch_fn(p, torch.tensor(x))


# ---------------------------------------------------------------- train mode sampling


def test_train_reproducible_and_identical_in_torch_and_ort():
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 12, 10), dtype=np.float32)
    params = {"mode": "train", "seed": 11, "kernel": 3, "stride": 2}
    p = SPEC.parse(params)
    (a,) = SPEC.torch_fn(p, torch.tensor(x))
    (b,) = SPEC.torch_fn(p, torch.tensor(x))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ort_forward(x, **params), a.numpy())
    np.testing.assert_array_equal(ort_forward(x, **params), ort_forward(x, **params))
    # each output is an element of its window
    windows = torch.tensor(x).unfold(2, 3, 2).unfold(3, 3, 2).reshape(*a.shape, 9)
    assert bool((windows == a.unsqueeze(-1)).any(-1).all())
    # another seed samples differently
    (c,) = SPEC.torch_fn(SPEC.parse({**params, "seed": 12}), torch.tensor(x))
    assert not torch.equal(a, c)


def test_train_frequencies_over_seeds():
    """Window (1, 2, 3, 4): element k is picked with probability 0.1 * k."""
    counts = np.zeros(5)
    x = torch.tensor(EXAMPLE_X)
    n = 4000
    for seed in range(n):
        (y,) = SPEC.torch_fn(SPEC.parse({"mode": "train", "seed": seed}), x)
        counts[int(y.item())] += 1
    np.testing.assert_allclose(counts[1:] / n, [0.1, 0.2, 0.3, 0.4], atol=0.025)


def test_train_frequencies_over_windows_in_ort():
    """Many copies of window (1, 2, 3, 4) in one tensor, one seed: same frequencies, same as torch."""
    x = np.tile(EXAMPLE_X, (3, 2, 1, 1000))  # 6000 windows
    params = {"mode": "train", "seed": 2024}
    y = ort_forward(x, **params)
    freq = np.array([(y == k).mean() for k in (1, 2, 3, 4)])
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.025)
    (yt,) = SPEC.torch_fn(SPEC.parse(params), torch.tensor(x))
    np.testing.assert_array_equal(y, yt.numpy())


def _hash_model(seed):
    """A graph ``idx -> u`` around :func:`sto.onnx_hash_uniform` (to test large counters)."""
    from poolops.onnx.graphs import _function, _model

    fn = _function(
        SimpleNamespace(name="hash"), "hash", lambda op, idx: sto.onnx_hash_uniform(op, seed, idx), ("idx",), "{}"
    )
    inputs = [ir.val("idx", ir.DataType.INT64, ir.Shape(["K"]))]
    return _model(fn, inputs, [ir.val("u", ir.DataType.FLOAT, None)], "")


@pytest.mark.parametrize("seed", [0, 7, 2**63 - 1])
def test_hash_same_in_torch_and_onnx_for_any_counter(seed):
    rng = np.random.default_rng(seed % 1000)
    idx = np.concatenate(
        [
            np.arange(1000),
            rng.integers(0, 2**62, 1000),
            [2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1],
        ]
    ).astype(np.int64)
    u_onnx = _session(_hash_model(seed)).run(None, {"idx": idx})[0]
    u_torch = sto.torch_hash_uniform(seed, torch.tensor(idx)).numpy()
    np.testing.assert_array_equal(u_onnx, u_torch)
    assert u_torch.dtype == np.float32 and u_torch.min() >= 0.0 and u_torch.max() < 1.0


def test_hash_uniform_and_uncorrelated():
    u = sto.torch_uniform(5, (200_000,)).numpy().astype(np.float64)
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(u.var() - 1 / 12) < 0.002
    counts = np.bincount((u * 64).astype(int), minlength=64)
    chi2 = ((counts - len(u) / 64) ** 2 / (len(u) / 64)).sum()
    assert chi2 < 130  # 63 degrees of freedom; p ~ 1e-6
    for lag in (1, 2, 40, 1600):
        assert abs(np.corrcoef(u[:-lag], u[lag:])[0, 1]) < 0.015
    # neighbouring seeds give unrelated streams
    v = sto.torch_uniform(6, (200_000,)).numpy()
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.015


# ---------------------------------------------------------------- torch vs ONNX Runtime


@st.composite
def cases(draw):
    n, c = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    if n * c * h * w > 60_000:  # keep the test fast; shape extremes are still drawn
        n, c = draw(st.sampled_from([(n, 1), (1, c), (1, 1)]))
    kernel = (draw(st.integers(1, min(h, 4))), draw(st.integers(1, min(w, 4))))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    params = {
        "kernel": kernel,
        "stride": stride,
        "mode": draw(st.sampled_from(["eval", "train"])),
        "seed": draw(st.integers(0, 2**63 - 1)),
        "negative": draw(st.sampled_from(["error", "clamp"])),
    }
    return (n, c, h, w), params, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_torch_matches_ort(case):
    shape, params, data_seed = case
    rng = np.random.default_rng(data_seed)
    if params["negative"] == "clamp":
        x = rng.standard_normal(shape).astype(np.float32)
    else:  # non-negative, with zeros (and so some all-zero windows)
        x = (rng.random(shape) * (rng.random(shape) < rng.uniform(0.2, 1.0))).astype(np.float32)
    p = SPEC.parse(params)
    SPEC.check(p, x)
    out_shape = SPEC.output_shape(p, shape)
    g = rng.standard_normal(out_shape).astype(np.float32)

    y_t, gx_t = torch_forward_backward(x, g, **params)
    assert y_t.shape == out_shape
    y_o = ort_forward(x, **params)
    gx_o = ort_backward(x, g, **params)
    assert y_o.shape == out_shape and gx_o.shape == shape
    assert np.isfinite(gx_t).all() and np.isfinite(gx_o).all()
    if params["mode"] == "train":
        np.testing.assert_array_equal(y_o, y_t)  # same samples, bit for bit
    else:
        _close(y_o, y_t)
    _close(gx_o, gx_t)


# ---------------------------------------------------------------- backward rules


def test_train_gradient_goes_to_the_sample():
    rng = np.random.default_rng(3)
    x = rng.random((1, 2, 6, 6), dtype=np.float32) + 0.1
    params = {"mode": "train", "seed": 5}
    g = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    y, gx = torch_forward_backward(x, g, **params)
    # every window sends its gradient to exactly the position holding its output
    for n, c, i, j in np.ndindex(*y.shape):
        window_x = x[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        window_g = gx[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        (pos,) = np.flatnonzero(window_x.reshape(-1) == y[n, c, i, j])
        expected = np.zeros(4, np.float32)
        expected[pos] = g[n, c, i, j]
        np.testing.assert_array_equal(window_g.reshape(-1), expected)
    np.testing.assert_allclose(ort_backward(x, g, **params), gx)


def test_eval_gradient_is_derivative_of_q_over_s():
    x = EXAMPLE_X.copy()
    _, gx = torch_forward_backward(x, np.ones((1, 1, 1, 1), np.float32))
    s, q = 10.0, 30.0
    expected = 2 * x / s - q / s**2
    np.testing.assert_allclose(gx, expected, rtol=1e-6)
    np.testing.assert_allclose(ort_backward(x, np.ones((1, 1, 1, 1), np.float32)), expected, rtol=1e-5)
    # and a finite-difference check on overlapping windows, in float64
    p = SPEC.parse({"kernel": 3, "stride": 1})
    xd = torch.rand(1, 2, 5, 6, dtype=torch.float64) + 0.05
    assert torch.autograd.gradcheck(lambda t: SPEC.torch_fn(p, t)[0], (xd.requires_grad_(),))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("stride", [None, 1])
def test_all_zero_windows_give_zero_and_no_gradient(mode, stride):
    x = np.zeros((1, 1, 4, 6), np.float32)
    x[:, :, :, 4:] = [[1.0, 2.0], [3.0, 4.0], [0.5, 0.0], [2.0, 1.0]]
    params = {"mode": mode, "seed": 9, "kernel": 2, "stride": stride}
    g = np.ones(SPEC.output_shape(SPEC.parse(params), x.shape), np.float32)
    y, gx = torch_forward_backward(x, g, **params)
    y_o, gx_o = ort_forward(x, **params), ort_backward(x, g, **params)
    zero_windows = (slice(None), slice(None), slice(None), slice(0, 2 if stride is None else 3))
    assert np.all(y[zero_windows] == 0) and np.all(y_o[zero_windows] == 0)
    assert np.isfinite(gx).all() and np.isfinite(gx_o).all()
    # inputs covered only by all-zero windows get no gradient
    only_zero = (slice(None), slice(None), slice(None), slice(0, 4 if stride is None else 3))
    assert np.all(gx[only_zero] == 0) and np.all(gx_o[only_zero] == 0)
    assert np.all(y[..., -1] > 0)
    np.testing.assert_allclose(gx_o, gx, rtol=1e-5, atol=1e-6)


def test_all_zero_input():
    x = np.zeros((2, 3, 5, 5), np.float32)
    for mode in ("eval", "train"):
        params = {"mode": mode, "kernel": 2, "stride": 1}
        g = np.ones((2, 3, 4, 4), np.float32)
        y, gx = torch_forward_backward(x, g, **params)
        assert not y.any() and not gx.any()
        assert not ort_forward(x, **params).any() and not ort_backward(x, g, **params).any()


# ---------------------------------------------------------------- negative input


def test_negative_input_is_an_error():
    x = EXAMPLE_X.copy()
    x[0, 0, 0, 0] = -1.0
    p = SPEC.parse({})
    for call in (lambda: SPEC.torch_fn(p, torch.tensor(x)), lambda: SPEC.check(p, x)):
        with pytest.raises(ParamError) as exc:
            call()
        assert exc.value.param == "x"
        assert "negative" in str(exc.value) and "clamp" in str(exc.value)
        assert isinstance(exc.value, ValueError)
    SPEC.check(p, np.abs(x))  # fine without the negative value


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_clamp_treats_negatives_as_zero(mode):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    params = {"mode": mode, "seed": 1, "negative": "clamp", "kernel": 2, "stride": 1}
    p = SPEC.parse(params)
    SPEC.check(p, x)
    g = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    y, gx = torch_forward_backward(x, g, **params)
    (y_relu,) = SPEC.torch_fn(SPEC.parse({**params, "negative": "error"}), torch.tensor(np.maximum(x, 0)))
    np.testing.assert_array_equal(y, y_relu.numpy())
    assert np.all(gx[x < 0] == 0)
    y_o = ort_forward(x, **params)
    if mode == "train":
        np.testing.assert_array_equal(y_o, y)
    else:
        _close(y_o, y)
    _close(ort_backward(x, g, **params), gx)


# ---------------------------------------------------------------- graphs and serving


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_graphs_use_cuda_kernels_only(mode):
    models = [
        op_model("stochastic", mode=mode, negative="clamp", kernel=3, stride=2),
        op_backward_model("stochastic", mode=mode, negative="clamp", kernel=3, stride=2),
    ]
    # ONNX Runtime's CUDA kernel table (tests/support/cuda_kernels.py), subgraphs included
    assert [bad for m in models for bad in nodes_without_cuda_kernel(m)] == []


def test_onnx_graphs_need_no_torch():
    code = (
        "import sys, poolops.onnx\n"
        "for mode in ('eval', 'train'):\n"
        "    poolops.onnx.op_model('stochastic', mode=mode)\n"
        "    poolops.onnx.op_backward_model('stochastic', mode=mode)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
