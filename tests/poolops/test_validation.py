"""Invalid parameters and inputs raise ValueError naming the parameter, everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError

BAD_PARAMS = [
    ("max", {"stride": 0}, "stride"),
    ("max", {"kernel": 0}, "kernel"),
    ("max", {"kernel": 3, "padding": 2}, "padding"),
    ("max", {"dilation": 0}, "dilation"),
    ("max", {"kernel": (2, 2, 2)}, "kernel"),
    ("max", {"kernal": 2}, "kernal"),
    ("avg", {"divisor_override": 0}, "divisor_override"),
    ("avg", {"kernel": -1}, "kernel"),
    ("adaptive_avg", {"output_size": 0}, "output_size"),
    ("adaptive_max", {"output_size": (2, -1)}, "output_size"),
    ("spp", {"levels": ()}, "levels"),
    ("spp", {"levels": (1, 0)}, "levels"),
    ("spp", {"mode": "median"}, "mode"),
    ("spp", {"bins": "fixed"}, "bins"),
    ("stochastic", {"mode": "test"}, "mode"),
    ("bilinear", {"eps": 0}, "eps"),
    ("bilinear", {"eps": float("nan")}, "eps"),
    ("bilinear", {"signed_sqrt": "maybe"}, "signed_sqrt"),
    ("attention", {"temperature": 0}, "temperature"),
    ("attention", {"temperature": float("inf")}, "temperature"),
    ("se", {"reduction": 4}, "reduction"),
]


@pytest.mark.parametrize("name,params,param", BAD_PARAMS)
def test_bad_parameter_is_named(name, params, param):
    for make in (
        lambda: poolops.get_op(name).parse(params),
        lambda: op_model(name, **params),
        lambda: PF.call(name, torch.ones(1, 1, 8, 8), **params),
        lambda: PN.module_class(name)(**params),
    ):
        with pytest.raises(ValueError) as err:
            make()
        assert isinstance(err.value, ParamError)
        assert err.value.param == param
        assert f"'{param}'" in str(err.value)


@pytest.mark.parametrize("name", ["max", "avg", "stochastic"])
def test_kernel_larger_than_padded_input(name):
    with pytest.raises(ParamError, match="'kernel'.*larger than the padded input"):
        PF.call(name, torch.ones(1, 1, 3, 8), kernel=(5, 2))
    # and legal when padding makes room (max, avg)
    if name != "stochastic":
        PF.call(name, torch.ones(1, 1, 3, 8), kernel=(5, 2), padding=(2, 0))


def test_max_dilation_counts_in_window_size():
    with pytest.raises(ParamError, match="window 5"):
        PF.max(torch.ones(1, 1, 4, 8), kernel=3, dilation=2)


@pytest.mark.parametrize("name", poolops.list_ops())
@pytest.mark.parametrize("shape", [(4, 4), (3, 4, 4), (1, 3, 4, 4), (1, 1, 1, 4, 4), (1, 1, 1, 1, 4, 4)])
def test_wrong_rank(name, shape):
    """x of another rank than the op's (4-D, or 3-D / 5-D for the 1-D / 3-D ops)."""
    spec = poolops.get_op(name)
    rank = len(spec.x_dims)
    if len(shape) == rank:
        pytest.skip("the op's own rank")
    inputs = [torch.ones(shape)] + [torch.ones(shape) for _ in spec.inputs[1:]]
    with pytest.raises(ParamError, match=f"'x'.*{rank}-D"):
        PF.call(name, *inputs)


def test_negative_input_to_stochastic_pooling():
    x = torch.ones(1, 1, 4, 4)
    x[0, 0, 1, 2] = -0.5
    with pytest.raises(ParamError, match="'x'") as err:
        PF.stochastic(x)
    assert "clamp" in str(err.value)
    with pytest.raises(ParamError):
        poolops.get_op("stochastic").check(poolops.get_op("stochastic").parse({}), x.numpy())
    assert torch.isfinite(PF.stochastic(x, negative="clamp")).all()


def test_unknown_op():
    with pytest.raises(ValueError, match="unknown op 'median'.*max"):
        poolops.get_op("median")
    with pytest.raises(ValueError, match="unknown op"):
        op_backward_model("median")


def test_return_indices_only_where_there_are_indices():
    with pytest.raises(ParamError, match="return_indices"):
        PF.avg(torch.ones(1, 1, 4, 4), return_indices=True)


def test_unknown_outputs():
    with pytest.raises(ValueError, match="unknown outputs"):
        op_model("avg", outputs=("indices",))


def test_window_of_only_padding_is_refused():
    # H=2, padding 1, dilation 3: the first window reads rows -1 and 2, both padding
    with pytest.raises(ParamError, match="'dilation'.*only padding"):
        PF.max(torch.ones(1, 1, 2, 1), kernel=(2, 1), padding=(1, 0), dilation=(3, 1))
    PF.max(torch.ones(1, 1, 3, 1), kernel=(2, 1), padding=(1, 0), dilation=(3, 1))  # row 2 is inside


# ---------------------------------------------------------------- validation cost


def _old_padding_only_window(size, kernel, stride, pad, dilation):
    """The loop check_window_fits used to run: O(padding * kernel)."""
    w = 0
    while w * stride - pad < 0:
        start = w * stride - pad
        if not any(0 <= start + j * dilation < size for j in range(kernel)):
            return w
        w += 1
    return None


def test_padding_only_window_closed_form_matches_the_loop():
    import itertools

    from poolops.ops._window import padding_only_window

    # every small case, padding beyond half the kernel too (the models refuse it, the rule does not)
    for case in itertools.product(range(0, 9), range(1, 8), range(1, 6), range(0, 8), range(1, 10)):
        assert padding_only_window(*case) == _old_padding_only_window(*case), case
    rng = np.random.default_rng(0)
    for _ in range(3000):
        size, kernel, stride, dilation = (int(v) for v in rng.integers(1, 60, 4))
        pad = int(rng.integers(0, kernel * dilation + 3))
        case = (size, kernel, stride, pad, dilation)
        assert padding_only_window(*case) == _old_padding_only_window(*case), case


def test_first_residue_in_matches_brute_force():
    from poolops.ops._window import first_residue_in

    rng = np.random.default_rng(1)
    for _ in range(20000):
        m = int(rng.integers(1, 50))
        a, b = int(rng.integers(0, 200)), int(rng.integers(-200, 200))
        lo = int(rng.integers(0, m))
        hi = int(rng.integers(lo, m))
        want = next((x for x in range(2 * m + 1) if lo <= (a * x + b) % m <= hi), None)
        assert first_residue_in(a, b, m, lo, hi) == want, (a, b, m, lo, hi)
    assert first_residue_in(10**12 + 39, 7, 10**15 + 37, 10**15, 10**15 + 36) is not None  # O(log m)


def test_window_check_is_fast_for_huge_kernels_and_padding():
    import time

    spec = poolops.get_op("max")
    x = np.ones((1, 1, 1, 1), np.float32)
    for params in (
        {"kernel": 30001, "padding": 15000},
        {"kernel": 30001, "padding": 15000, "stride": 1},
        {"kernel": (2, 30001), "padding": (1, 15000), "dilation": (1, 1), "ceil_mode": True},
    ):
        p = spec.parse(params)
        t0 = time.perf_counter()
        spec.check(p, x)
        spec.cost(p, {"x": x.shape}, ("y", "indices"), backward=True)
        assert time.perf_counter() - t0 < 0.05, params
    p = spec.parse({"kernel": 20001, "padding": 10000, "dilation": 3})
    t0 = time.perf_counter()
    with pytest.raises(ParamError, match="'kernel'"):
        spec.check(p, np.ones((1, 1, 5, 5), np.float32))
    assert time.perf_counter() - t0 < 0.05


@pytest.mark.parametrize("name,param", [("spp", "levels"), ("multiscale", "kernels")])
def test_list_parameters_are_capped(name, param):
    spec = poolops.get_op(name)
    spec.parse({param: tuple(range(1, 17))})  # 16 entries: fine
    for values in (tuple(range(1, 18)), list(range(1, 100_001))):
        with pytest.raises(ParamError, match=f"'{param}': at most 16") as err:
            spec.parse({param: values})
        assert err.value.param == param and len(str(err.value)) < 200


def test_error_messages_quote_little_of_the_input():
    with pytest.raises(ParamError) as err:
        poolops.get_op("max").parse({"kernel": "x" * 100_000})
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("name", ["roi_align", "deform_roi_pool"])
def test_adaptive_sampling_refuses_boxes_far_larger_than_the_map(name):
    """ceil(roi / o)^2 samples per bin: a box's RoI is capped at 2 * side + 2."""
    spec = poolops.get_op(name)
    x = np.ones((1, 1, 8, 10), np.float32)

    def check(boxes, **params):
        p = spec.parse({"output_size": 2, **params})
        extra = [np.array(boxes, np.float32)]
        if name == "deform_roi_pool":
            extra.append(np.zeros((len(boxes), 2, 2, 2), np.float32))
        spec.check(p, x, *extra)

    check([[0, -5, -4, 17, 13]])  # 22 x 17: within 2 * 10 + 2 and 2 * 8 + 2
    check([[0, 0, 0, 1e6, 1]], sampling_ratio=2)  # a fixed grid: any box
    for boxes, axis in (([[0, -5, 0, 18, 1]], "W"), ([[0, 0, 0, 1, 1], [0, 0, -1e6, 1, 1e6]], "H")):
        with pytest.raises(ParamError, match=f"'boxes'.*axis {axis}.*sampling_ratio") as err:
            check(boxes)
        assert err.value.param == "boxes"
    with pytest.raises(ParamError, match="spatial_scale"):
        check([[0, 0, 0, 50, 1]], spatial_scale=0.5)  # 25 > 22 after the scale
    check([[0, 0, 0, 40, 1]], spatial_scale=0.5)  # 20: fine


# ---------------------------------------------------------------- extra inputs (bilinear, attention, se)


@pytest.mark.parametrize(
    "name, extra, bad, expected",
    [
        ("bilinear", [(2, 4, 5, 6)], "x2", r"'x2': expected shape \[N, C2, H, W\] = \[2, C2, 5, 7\], got \(2, 4, 5, 6\)"),
        ("bilinear", [(1, 4, 5, 7)], "x2", r"= \[2, C2, 5, 7\], got \(1, 4, 5, 7\)"),
        ("attention", [(2, 2, 5, 7)], "attn", r"'attn': expected shape \[N, 1, H, W\] or \[N, C, H, W\]"),
        ("attention", [(2, 1, 5)], "attn", r"'attn': expected shape \[N, A, H, W\]"),
        ("se", [(2, 3), (2,), (3, 3), (3,)], "se_w2", r"'se_w2': expected shape \[C, R\] = \[3, 2\], got \(3, 3\)"),
        ("se", [(2, 4), (2,), (3, 2), (3,)], "se_w1", r"'se_w1': expected shape \[R, C\] = \[R, 3\]"),
        ("se", [(2, 3), (3,), (3, 2), (3,)], "se_b1", r"'se_b1': expected shape \[R\] = \[2\]"),
        ("se", [(2, 3), (2,), (3, 2)], "se_b2", r"'se_b2': is a required input"),
    ],
)
def test_wrong_extra_inputs_are_named(name, extra, bad, expected):
    x = torch.ones(2, 3, 5, 7)
    with pytest.raises(ParamError, match=expected) as err:
        PF.call(name, x, *[torch.ones(s) for s in extra])
    assert err.value.param == bad
    if "required" not in expected:  # the same check on numpy inputs (what the service has)
        spec = poolops.get_op(name)
        with pytest.raises(ParamError, match=expected):
            spec.check(spec.parse({}), x.numpy(), *[np.ones(s, np.float32) for s in extra])


def test_integer_extra_input_is_refused():
    with pytest.raises(ParamError, match="'x2': expected float32 \\(floating point\\)"):
        PF.bilinear(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3, dtype=torch.int64))


@pytest.mark.parametrize(
    "name, inputs, outputs, param",
    [
        ("se", ("x",), ("y",), "se_w1"),  # a required input left out
        ("max", ("x", "boxes"), ("y",), "boxes"),  # an input the op does not take
        ("avg", ("x",), ("y", "indices"), "outputs"),  # an output it does not have
    ],
)
def test_inputs_and_outputs_are_checked_in_one_place_for_every_face(name, inputs, outputs, param):
    """``OpSpec.bind`` checks the names of a run's tensors for the torch function, the ONNX
    graph and the cost estimate alike: the same error from each."""
    spec = poolops.get_op(name)
    with pytest.raises(ParamError) as bound:
        spec.bind(inputs, outputs)
    tensors = [torch.ones(1, 3, 8, 8) if n == "x" else torch.ones(1, 5) for n in inputs]
    shapes = {n: tuple(t.shape) for n, t in zip(inputs, tensors)}
    faces = [
        lambda: op_model(name, outputs=outputs, inputs=inputs),
        lambda: spec.cost({}, shapes, outputs),
    ]
    if "boxes" not in inputs:  # the torch functions take the inputs by position
        faces.append(lambda: PF.call(name, *tensors, return_indices="indices" in outputs))
    for face in faces:
        with pytest.raises(ParamError) as err:
            face()
        assert (err.value.param, str(err.value)) == (bound.value.param, str(bound.value))
