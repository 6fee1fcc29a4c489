"""Classifiers with SPP, GAP and fixed heads export with dynamic N, H, W and match torch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from poolops_models.classifier import build_model
from poolops_models.export import export_classifier, max_parity_error

HEADS = {
    "spp": ({"type": "spp", "levels": [1, 2, 4], "mode": "max"}, None),
    "spp-avg": ({"type": "spp", "levels": [1, 3], "mode": "avg"}, None),
    "gap": ({"type": "gap"}, None),
    "fixed": ({"type": "fixed", "feature_size": [8, 8]}, [32, 32]),
}


@pytest.mark.parametrize("head", HEADS)
def test_classifier_exports_for_any_size(head):
    torch.manual_seed(0)
    cfg, resize = HEADS[head]
    model = build_model({"backbone": {"type": "small_cnn", "width": 8}, "head": cfg, "num_classes": 5, "resize": resize})
    proto = export_classifier(model.eval(), 1, (40, 48))
    assert max_parity_error(model, proto, 1, [(24, 24), (37, 61), (128, 96)]) < 1e-4
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, emb = sess.run(None, {"x": np.random.default_rng(0).random((3, 1, 50, 70), dtype=np.float32)})
    assert logits.shape == (3, 5)
    with torch.inference_mode():
        assert emb.shape[1] == model.embed(torch.zeros(1, 1, 50, 70)).shape[1]


def test_spp_embedding_length_is_independent_of_size():
    model = build_model({"backbone": {"type": "small_cnn", "width": 8}, "head": HEADS["spp"][0], "num_classes": 5}).eval()
    with torch.inference_mode():
        lengths = {model.embed(torch.zeros(1, 1, h, w)).shape[1] for h, w in [(16, 16), (40, 90), (200, 33)]}
    assert lengths == {32 * 21}
