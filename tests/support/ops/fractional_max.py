from hypothesis import strategies as st

_size = st.fixed_dictionaries({"output_size": st.tuples(st.integers(1, 8), st.integers(1, 8))})
_ratio = st.fixed_dictionaries({"output_ratio": st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95))})

PARAMS = {
    "fractional_max": st.tuples(
        st.fixed_dictionaries(
            {"kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)), "seed": st.integers(0, 2**63 - 1)}
        ),
        _size | _ratio | st.just({}),
    ).map(lambda t: {**t[0], **t[1]}),
}
