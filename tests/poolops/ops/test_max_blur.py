"""``max_blur`` (poolops/ops/max_blur.py): worked example, a naive reference (dense max then
the binomial blur), the shift test of the anti-aliased pools, edges and bad inputs. (The
property tests of tests/poolops/test_torch_onnx_parity.py cover random parameters and
shapes, forward, backward and NaN.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops.functional as PF
from poolops.params import ParamError
from support.faces import autograd, check_all_faces, check_worked_example_and_backward, onnx_backward, onnx_forward
from support.naive import blur, max_stride1
from support.runtime import assert_close


def test_worked_example():
    params = {"kernel": (1, 2), "filt_size": 3, "stride": (1, 2), "pad_type": "replicate"}
    check_all_faces("max_blur", [[[[1, 5, 2, 0]]]], [[[[5.0, 2.75]]]], [[[[1.0, 1.0]]]], [[[[0, 1.25, 0.75, 0]]]],
                    **params)
    check_worked_example_and_backward("max_blur", onnx_backward_graph=True)


@pytest.mark.parametrize(
    "shape, params",
    [
        ((2, 3, 12, 9), {}),  # antialiased-cnns: max 2x2 at stride 1, BlurPool(filt_size=4, stride=2), reflect
        ((1, 2, 9, 10), {"kernel": 3, "filt_size": 3, "stride": 2, "pad_type": "zero"}),  # kornia's MaxBlurPool2D
        ((2, 1, 7, 5), {"kernel": (2, 1), "filt_size": 5, "stride": (1, 3), "pad_type": "replicate"}),
        ((1, 1, 2, 2), {"pad_type": "replicate"}),  # the dense max is 1x1
        ((1, 2, 1, 1), {"kernel": 1, "filt_size": 7, "pad_type": "zero"}),
        ((1, 1, 6, 6), {"kernel": 2, "filt_size": 7, "stride": 1}),  # the smallest map reflect takes: 4 + 1
    ],
)
def test_matches_naive_reference(shape, params):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    full = {"kernel": 2, "filt_size": 4, "stride": 2, "pad_type": "reflect", **params}
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    expected = blur(max_stride1(x, pair(full["kernel"])), full["filt_size"], pair(full["stride"]), full["pad_type"])
    expected = expected.astype(np.float32)
    g = rng.standard_normal(expected.shape).astype(np.float32)
    y, grad = autograd("max_blur", x, g, **params)
    assert_close(y, expected, what="torch")
    assert_close(onnx_forward("max_blur", x, **params), expected, what="onnx")
    assert_close(onnx_backward("max_blur", x, g, **params), grad, what="backward")


def _change(fn, x) -> float:
    """How much the output moves when the input moves one pixel to the left."""
    a, b = fn(x[:, :, 2:66, 2:66]), fn(x[:, :, 2:66, 3:67])
    return float((a - b).norm() / a.norm())


def test_one_pixel_shift_changes_the_output_far_less_than_max():
    """Zhang 2019, Fig. 1: stripes two pixels wide (0 0 1 1 0 0 1 1 ...) max-pooled at stride
    2 give 0 1 0 1, shifted by one pixel 1 1 1 1: the output changes completely. Blurring
    before subsampling keeps the change small, on the stripes and on noise."""
    stripes = torch.from_numpy(np.tile(((np.arange(70) // 2) % 2).astype(np.float32), (1, 1, 70, 1)))
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 70, 70)).astype(np.float32))
    max_pool = lambda t: PF.max(t, kernel=2)  # noqa: E731
    assert _change(max_pool, stripes) == pytest.approx(1.0)
    for fn in (PF.blur, PF.max_blur, lambda t: PF.max_blur(t, filt_size=3, pad_type="zero")):
        assert _change(fn, stripes) < 0.5 * _change(max_pool, stripes)
    assert _change(PF.max_blur, noise) < 0.5 * _change(max_pool, noise)
    # the ONNX graphs are the same functions
    x = stripes[:, :, 2:66, 3:67].numpy()
    assert_close(onnx_forward("max_blur", x), PF.max_blur(torch.from_numpy(x)).numpy())


def test_bad_inputs_are_named():
    with pytest.raises(ParamError, match="'kernel'.*larger than the input"):
        PF.max_blur(torch.ones(1, 1, 1, 5))
    with pytest.raises(ParamError, match="'pad_type'.*max-pooled map"):
        PF.max_blur(torch.ones(1, 1, 3, 8))  # dense max 2 rows, reflect by 2 needs 3
    PF.max_blur(torch.ones(1, 1, 3, 8), pad_type="zero")


def test_a_network_with_it_exports_with_dynamic_sizes(tmp_path):
    import poolops.nn as PN
    from support.faces import check_head_export

    check_head_export(PN.MaxBlurPool(pad_type="zero"), tmp_path, "max_blur")
    check_head_export(PN.BlurPool(filt_size=3), tmp_path, "blur")
