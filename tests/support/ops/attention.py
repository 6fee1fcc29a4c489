from hypothesis import strategies as st

# the extra inputs (attn, se_*) come from their input kinds' example generators
PARAMS = {
    "attention": st.fixed_dictionaries({"temperature": st.sampled_from([1.0, 0.5, 3.0]) | st.floats(0.25, 4.0)}),
    "se": st.fixed_dictionaries({"pooled": st.booleans()}),
}
