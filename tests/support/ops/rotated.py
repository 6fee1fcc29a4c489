"""Oriented ops: small (also non-square) output sizes; rotated boxes come from the input
kind's examples (tests/poolops/ops/test_rotated.py)."""

from hypothesis import strategies as st

PARAMS = {
    "roi_align_rotated": st.fixed_dictionaries({
        "output_size": st.tuples(st.integers(1, 4), st.integers(1, 4)),
        "spatial_scale": st.sampled_from([1.0, 0.5, 0.25, 2.0]),
        "sampling_ratio": st.sampled_from([-1, 0, 1, 2, 3]),
        "aligned": st.booleans(),
        "clockwise": st.booleans(),
    }),
    "rotation_invariant": st.fixed_dictionaries({
        "orientations": st.sampled_from([1, 2, 4]),
        "mode": st.sampled_from(["max", "align"]),
    }),
}
shape = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
