"""RoI ops: small output sizes; their inputs (boxes, offsets) come from the input kinds'
examples (tests/poolops/ops/test_roi.py)."""

from hypothesis import strategies as st

_common = {
    "output_size": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "spatial_scale": st.sampled_from([1.0, 0.5, 0.25, 1 / 16, 2.0]),
}
_align = {**_common, "sampling_ratio": st.sampled_from([-1, 0, 1, 2, 3]), "aligned": st.booleans()}

PARAMS = {
    "roi_pool": st.fixed_dictionaries(_common),
    "roi_align": st.fixed_dictionaries(_align),
    "deform_roi_pool": st.fixed_dictionaries({**_align, "gamma": st.sampled_from([0.1, 0.5, 1.0, -0.3])}),
}
OPS = tuple(PARAMS)
shape = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
