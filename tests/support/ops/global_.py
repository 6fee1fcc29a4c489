from hypothesis import strategies as st

PARAMS = {
    "global_avg": st.just({}),
    "global_max": st.fixed_dictionaries({"propagate_nan": st.booleans()}),
}
