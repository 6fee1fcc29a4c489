from hypothesis import strategies as st

PARAMS = {
    "max_blur": st.fixed_dictionaries(
        {
            "kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)),
            "filt_size": st.integers(1, 7),
            "stride": st.tuples(st.integers(1, 4), st.integers(1, 4)),
            "pad_type": st.sampled_from(["reflect", "replicate", "zero"]),
            "propagate_nan": st.booleans(),
        }
    ),
}
