from hypothesis import strategies as st

# the extra input x2 comes from its input kind's example generator
PARAMS = {
    "bilinear": st.fixed_dictionaries(
        {
            "signed_sqrt": st.booleans(),
            "l2_normalize": st.booleans(),
            "eps": st.sampled_from([1e-12, 1e-6]),
        }
    ),
}
