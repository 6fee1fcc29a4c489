from hypothesis import strategies as st

from support.strategies import output_size

PARAMS = {
    "adaptive_avg": st.fixed_dictionaries({"output_size": output_size}),
    "adaptive_max": st.fixed_dictionaries({"output_size": output_size, "propagate_nan": st.booleans()}),
}
