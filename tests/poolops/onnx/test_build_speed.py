"""The memoised op-signature conversion (``poolops.onnx.graphs``) gives what onnx_ir gives."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest

import poolops.onnx.graphs  # noqa: F401 - installs the memo
from poolops.onnx import op_model
from poolops.onnx.builder import OPSET


def test_memoised_signatures_equal_onnx_irs_own():
    memo = ir.schemas.OpSignature.from_op_schema
    original = memo.__func__._poolops_original
    schemas = [s for s in onnx.defs.get_all_schemas_with_history() if s.domain == "" and s.since_version <= OPSET]
    assert len(schemas) > 300
    for s in schemas:
        try:
            want = original(ir.schemas.OpSignature, s)
        except ValueError:  # a few old schemas onnx_ir cannot convert (Split-2's 'split' twice)
            with pytest.raises(ValueError):
                memo(s)
            continue
        assert memo(s) == want, s.name
        assert memo(s) is memo(s)


def test_graphs_built_with_the_memo_run():
    import numpy as np
    import onnxruntime as ort

    x = np.arange(2 * 3 * 9 * 10, dtype=np.float32).reshape(2, 3, 9, 10)
    y = ort.InferenceSession(op_model("spp", levels=(1, 2)).SerializeToString()).run(None, {"x": x})[0]
    assert y.shape == (2, 3 * 5) and y[0, 0] == x[0, 0].max()
