from hypothesis import strategies as st

from support.strategies import small

# The indices come from their input kind's example generator: a cell of each window, all
# different when the output has room for them, which padding <= (kernel - 1) // 2 ensures
# (PyTorch writes repeated indices in parallel, any one of them: not comparable).
PARAMS = {
    "max_unpool": st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
        lambda k: st.fixed_dictionaries(
            {
                "kernel": st.just(k),
                "stride": st.none() | st.tuples(small, small),
                "padding": st.tuples(st.integers(0, (k[0] - 1) // 2), st.integers(0, (k[1] - 1) // 2)),
            }
        )
    ),
}
