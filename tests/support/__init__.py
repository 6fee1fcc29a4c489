"""Test-support code shared by the test files: ONNX Runtime helpers (:mod:`.runtime`),
Hypothesis strategies of every op's parameters (:mod:`.strategies`, one module per op
file under :mod:`.ops`), naive references (:mod:`.roi_reference`) and the case drawing
of the parity tests (:mod:`.parity`).

``tests/`` is on ``sys.path`` while pytest runs (``tests/conftest.py`` sits there without
an ``__init__.py``), so test files import ``from support.runtime import assert_close``.
"""
