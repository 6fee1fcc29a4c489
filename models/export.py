"""Export classifiers to ONNX (dynamic N, H, W; outputs ``logits`` and ``embedding``)
through :func:`poolops.onnx.export`, and check the graph against torch."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
import onnxruntime as ort
import torch

from poolops_models.classifier import Classifier, WithEmbedding
from poolops.onnx import export as poolops_export

OUTPUTS = ["logits", "embedding"]


def export_classifier(model: Classifier, channels: int, example_size=(64, 64), valid: bool = False) -> onnx.ModelProto:
    """Inputs ``x`` (and ``valid [N, 2]`` int64 for a padding-invariant export)."""
    model = model.eval()
    x = torch.randn(2, channels, *example_size)
    if not valid:
        return poolops_export(WithEmbedding(model), x, output_names=OUTPUTS)
    sizes = torch.tensor([list(example_size), [example_size[0] - 3, example_size[1] - 5]])
    return poolops_export(WithEmbedding(model), (x, sizes), input_name=["x", "valid"], output_names=OUTPUTS)


def max_parity_error(model: Classifier, proto: onnx.ModelProto, channels: int, sizes: Iterable[tuple[int, int]]) -> float:
    """Largest |ORT - torch| of the logits over ``sizes``, relative to the logits' scale."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    model = model.eval()
    with_valid = [i.name for i in sess.get_inputs()] == ["x", "valid"]
    for h, w in sizes:
        x = rng.random((2, channels, h, w), dtype=np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        feeds = {"x": x}
        if with_valid:
            feeds["valid"] = np.array([[h, w]] * 2, np.int64)
        logits = sess.run(["logits"], feeds)[0]
        worst = max(worst, float(np.abs(logits - expected).max() / max(np.abs(expected).max(), 1e-6)))
    return worst
