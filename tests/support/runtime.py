"""Run ONNX models in the real ONNX Runtime (CPU) and compare with torch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


def session(model) -> ort.InferenceSession:
    """A CPU session of an ``onnx.ModelProto``."""
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(model, **feeds: np.ndarray) -> list[np.ndarray]:
    return session(model).run(None, feeds)


def assert_close(
    actual: np.ndarray, expected: np.ndarray, rel: float = 1e-5, what: str = "", floor: float = 1e-3
) -> None:
    """Equal to ``rel`` of the expected output's scale: its largest finite magnitude, at
    least ``floor`` (pass 1% of the input's scale for reductions whose outputs can
    cancel to near zero, like the mean of zero-mean data)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected), err_msg=f"{what}: +inf positions differ")
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected), err_msg=f"{what}: -inf positions differ")
    if not finite.any():
        return
    scale = max(float(np.abs(expected[finite]).max()), floor)
    err = float(np.abs(actual[finite] - expected[finite]).max())
    assert err <= rel * scale, f"{what}: max error {err:g} > {rel:g} * scale {scale:g}"


def check_export(model, sizes, path=None, rel: float = 1e-5, what: str = "") -> None:
    """Export ``model`` (3-channel image input) with dynamic N, H, W (``poolops.onnx.export``),
    then run it in ONNX Runtime at each ``(n, h, w)`` of ``sizes`` against torch."""
    import torch

    from poolops.onnx import export

    proto = export(model, torch.randn(2, 3, 32, 40), path, output_names=["logits"])
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    sess = session(proto)
    for n, h, w in sizes:
        x = torch.randn(n, 3, h, w)
        with torch.no_grad():
            expected = model(x).numpy()
        (actual,) = sess.run(None, {"x": x.numpy()})
        assert_close(actual, expected, rel=rel, what=f"{what} at {(n, h, w)}")


def node_events(model, feeds) -> list[dict]:
    """The node events (``cat == "Node"``, kernel times; If branches included) of ONNX
    Runtime's profile of one run of ``model`` on ``feeds``."""
    import json
    import os
    import tempfile

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def largest_node_bytes(model, feeds) -> int:
    """The bytes of the largest node output (all outputs of one node) in ONNX Runtime's
    profile of one run (as tests/poolops/test_cost.py measures)."""
    return max(int(e["args"]["output_size"]) for e in node_events(model, feeds))
