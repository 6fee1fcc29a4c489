from hypothesis import strategies as st

PARAMS = {
    "multiscale": st.fixed_dictionaries(
        {
            "kernels": st.lists(st.integers(1, 8), min_size=1, max_size=4).map(tuple),
            "propagate_nan": st.booleans(),
        }
    ),
}
