from hypothesis import strategies as st

PARAMS = {
    "blur": st.fixed_dictionaries(
        {
            "filt_size": st.integers(1, 7),
            "stride": st.tuples(st.integers(1, 4), st.integers(1, 4)),
            "pad_type": st.sampled_from(["reflect", "replicate", "zero"]),
        }
    ),
}
