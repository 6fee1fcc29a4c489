"""Re-exports the parity tests' case drawing under its old names for
tests/test_cuda_parity.py (``from test_parity import _draw_case, ...``); not collected
(``collect_ignore`` in tests/conftest.py). Drop it once that file imports from
``support.parity``."""

from support.parity import (  # noqa: F401
    draw_case as _draw_case,
    draw_input as _input,
    draw_inputs as _draw_inputs,
    extra_inputs as _extra_inputs,
    scale_floor as _floor,
    torch_args as _torch_args,
)
