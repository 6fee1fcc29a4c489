from hypothesis import strategies as st

from support.strategies import small

# the logit map comes from its input kind's example generator
PARAMS = {
    "lip": st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
        lambda k: st.fixed_dictionaries(
            {
                "kernel": st.just(k),
                "stride": st.tuples(small, small),
                "padding": st.tuples(st.integers(0, k[0] // 2), st.integers(0, k[1] // 2)),
            }
        )
    ),
}
