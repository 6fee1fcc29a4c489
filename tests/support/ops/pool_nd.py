"""1-D and 3-D pooling (poolops/ops/pool_nd.py): windows per axis, adaptive output sizes."""

from hypothesis import strategies as st


@st.composite
def window_nd(draw, r: int, dilation: bool = False, divisor: bool = False, nan: bool = False):
    top = 5 if r == 1 else 3
    k = tuple(draw(st.integers(1, top)) for _ in range(r))
    params = dict(
        kernel=k,
        stride=draw(st.none() | st.tuples(*(st.integers(1, 3),) * r)),
        padding=tuple(draw(st.integers(0, v // 2)) for v in k),
        ceil_mode=draw(st.booleans()),
    )
    if dilation:
        params["dilation"] = tuple(draw(st.integers(1, 3)) for _ in range(r))
    if divisor:
        params["count_include_pad"] = draw(st.booleans())
        if r == 3:
            params["divisor_override"] = draw(st.none() | st.integers(1, 9))
    if nan:
        params["propagate_nan"] = draw(st.booleans())
    return params


def _output_size(r: int):
    return st.tuples(*(st.integers(1, 8 if r == 1 else 4),) * r)


PARAMS = {}
for _r in (1, 3):
    PARAMS[f"max{_r}d"] = window_nd(_r, dilation=True, nan=True)
    PARAMS[f"avg{_r}d"] = window_nd(_r, divisor=True)
    PARAMS[f"adaptive_avg{_r}d"] = st.fixed_dictionaries({"output_size": _output_size(_r)})
    PARAMS[f"adaptive_max{_r}d"] = st.fixed_dictionaries({"output_size": _output_size(_r), "propagate_nan": st.booleans()})
    PARAMS[f"global_avg{_r}d"] = st.just({})
    PARAMS[f"global_max{_r}d"] = st.fixed_dictionaries({"propagate_nan": st.booleans()})
