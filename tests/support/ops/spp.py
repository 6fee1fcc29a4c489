from hypothesis import strategies as st

# a level: n (n x n bins) or (rows, cols)
level = st.integers(1, 6) | st.tuples(st.integers(1, 6), st.integers(1, 6))

PARAMS = {
    "spp": st.fixed_dictionaries(
        {
            "levels": st.lists(level, min_size=1, max_size=4).map(tuple),
            "mode": st.sampled_from(["max", "avg"]),
            "bins": st.sampled_from(["adaptive", "sppnet"]),
        }
    ),
}
