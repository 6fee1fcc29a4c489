from hypothesis import strategies as st

from support.strategies import small

PARAMS = {
    "softpool": st.fixed_dictionaries(
        {"kernel": st.tuples(st.integers(1, 5), st.integers(1, 5)), "stride": st.none() | st.tuples(small, small)}
    ),
}
