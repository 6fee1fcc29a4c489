from hypothesis import strategies as st

PARAMS = {
    "spp": st.fixed_dictionaries(
        {
            "levels": st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
            "mode": st.sampled_from(["max", "avg"]),
            "bins": st.sampled_from(["adaptive", "sppnet"]),
        }
    ),
}
