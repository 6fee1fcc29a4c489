"""Parameter strategies, one module per op file of ``poolops/ops/`` (same name); each
defines ``PARAMS``: op name -> Hypothesis strategy of its parameters."""
