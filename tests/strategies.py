"""Hypothesis strategies for each op's parameters, and shapes.

Ops without an entry here are tested with their default parameters (so a new
op is still covered by the parity tests, which enumerate the registry).
"""

from __future__ import annotations

from hypothesis import strategies as st

small = st.integers(1, 4)


@st.composite
def window(draw, dilation: bool = False, divisor: bool = False, nan: bool = False):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    params = dict(
        kernel=k,
        stride=draw(st.none() | st.tuples(small, small)),
        padding=(draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2))),
        ceil_mode=draw(st.booleans()),
    )
    if dilation:
        params["dilation"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if divisor:
        params["count_include_pad"] = draw(st.booleans())
        params["divisor_override"] = draw(st.none() | st.integers(1, 9))
    if nan:
        params["propagate_nan"] = draw(st.booleans())
    return params


output_size = st.tuples(st.integers(1, 8), st.integers(1, 8))

PARAMS = {
    "max": window(dilation=True, nan=True),
    "avg": window(divisor=True),
    "global_avg": st.just({}),
    "global_max": st.fixed_dictionaries({"propagate_nan": st.booleans()}),
    "adaptive_avg": st.fixed_dictionaries({"output_size": output_size}),
    "adaptive_max": st.fixed_dictionaries({"output_size": output_size, "propagate_nan": st.booleans()}),
    "spp": st.fixed_dictionaries(
        {
            "levels": st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
            "mode": st.sampled_from(["max", "avg"]),
            "bins": st.sampled_from(["adaptive", "sppnet"]),
        }
    ),
    "mixed": window(nan=True).flatmap(
        lambda w: st.fixed_dictionaries(
            {"mode": st.sampled_from(["blend", "concat"]), "alpha": st.floats(0, 1)}
        ).map(lambda extra: {**w, **extra})
    ),
    "stochastic": st.fixed_dictionaries(
        {
            "kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)),
            "stride": st.none() | st.tuples(small, small),
            "mode": st.sampled_from(["eval", "train"]),
            "seed": st.integers(0, 2**31 - 1),
        }
    ),
    # lp: non-negative inputs (input_domain); p <= 4 keeps x^p of the smallest drawn
    # values (~1e-7) a normal float, where torch and ONNX Runtime round alike
    "lp": st.fixed_dictionaries(
        {
            "norm_type": st.floats(0.5, 4.0) | st.sampled_from([1.0, 2.0, 3.0]),
            "kernel": st.tuples(st.integers(1, 5), st.integers(1, 5)),
            "stride": st.none() | st.tuples(small, small),
            "ceil_mode": st.booleans(),
        }
    ),
    # gem: eps^p stays a normal float (>= 1e-36) for every drawn p and eps
    "gem": st.fixed_dictionaries(
        {
            "p": st.floats(0.25, 6.0) | st.sampled_from([1.0, 3.0]),
            "eps": st.sampled_from([1e-6, 1e-3, 0.1]),
        }
    ).flatmap(
        lambda d: st.just(d)
        | st.fixed_dictionaries(
            {
                "kernel": st.tuples(st.integers(1, 5), st.integers(1, 5)),
                "stride": st.none() | st.tuples(small, small),
            }
        ).map(lambda w: {**d, **w})
    ),
    "strip": st.fixed_dictionaries({"direction": st.sampled_from(["h", "v", "diag", "antidiag"])}),
    "multiscale": st.fixed_dictionaries(
        {
            "kernels": st.lists(st.integers(1, 8), min_size=1, max_size=4).map(tuple),
            "propagate_nan": st.booleans(),
        }
    ),
    # bilinear / attention / se (their extra inputs come from the input kinds' examples)
    "bilinear": st.fixed_dictionaries(
        {
            "signed_sqrt": st.booleans(),
            "l2_normalize": st.booleans(),
            "eps": st.sampled_from([1e-12, 1e-6]),
        }
    ),
    "attention": st.fixed_dictionaries({"temperature": st.sampled_from([1.0, 0.5, 3.0]) | st.floats(0.25, 4.0)}),
    "se": st.just({}),
}


def params_for(name: str):
    return PARAMS.get(name, st.just({}))


# H and W from 1 to ~100; a few shapes per example so one graph is run at several sizes.
spatial = st.integers(1, 100)
shape = st.tuples(st.integers(1, 3), st.integers(1, 4), spatial, spatial)


# RoI ops: small output sizes; inputs (boxes, offsets) come from poolops.inputs' examples
# (tests/test_roi.py; the generic parity tests take only ops whose one input is x)
_roi_common = {
    "output_size": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "spatial_scale": st.sampled_from([1.0, 0.5, 0.25, 1 / 16, 2.0]),
}
_align = {**_roi_common, "sampling_ratio": st.sampled_from([-1, 0, 1, 2, 3]), "aligned": st.booleans()}
PARAMS.update(
    {
        "roi_pool": st.fixed_dictionaries(_roi_common),
        "roi_align": st.fixed_dictionaries(_align),
        "deform_roi_pool": st.fixed_dictionaries({**_align, "gamma": st.sampled_from([0.1, 0.5, 1.0, -0.3])}),
    }
)
ROI_OPS = ("roi_pool", "roi_align", "deform_roi_pool")
roi_shape = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
