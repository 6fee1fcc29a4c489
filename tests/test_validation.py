"""Invalid parameters and inputs raise ValueError naming the parameter, everywhere."""

from __future__ import annotations

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
@pytest.mark.parametrize("shape", [(4, 4), (3, 4, 4), (1, 1, 1, 4, 4)])
def test_wrong_rank(name, shape):
    spec = poolops.get_op(name)
    inputs = [torch.ones(shape)] + [torch.ones(shape) for _ in spec.inputs[1:]]
    with pytest.raises(ParamError, match="'x'.*4-D"):
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
