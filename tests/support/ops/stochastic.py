from hypothesis import strategies as st

from support.strategies import small

PARAMS = {
    "stochastic": st.fixed_dictionaries(
        {
            "kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)),
            "stride": st.none() | st.tuples(small, small),
            "mode": st.sampled_from(["eval", "train"]),
            "seed": st.integers(0, 2**31 - 1),
        }
    ),
}
