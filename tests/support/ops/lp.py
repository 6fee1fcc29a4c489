from hypothesis import strategies as st

from support.strategies import small

PARAMS = {
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
}
