from hypothesis import strategies as st

from support.strategies import window

PARAMS = {
    "mixed": window(nan=True).flatmap(
        lambda w: st.fixed_dictionaries(
            {"mode": st.sampled_from(["blend", "concat"]), "alpha": st.floats(0, 1)}
        ).map(lambda extra: {**w, **extra})
    ),
}
