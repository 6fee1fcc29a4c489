from hypothesis import strategies as st

PARAMS = {"strip": st.fixed_dictionaries({"direction": st.sampled_from(["h", "v", "diag", "antidiag"])})}
