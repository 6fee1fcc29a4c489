"""Padding-invariant models: a zero-padded batch of different-size images with their
valid sizes gives exactly what running each image alone gives (torch and ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from poolops_models.classifier import build_model
from poolops_models.export import export_classifier
from poolops_models.padding import make_padded_batch

SIZES = [(24, 40), (37, 29), (64, 64), (9, 13), (8, 8)]
HEADS = {
    "spp": {"type": "spp", "levels": [1, 2, 4], "mode": "max"},
    "spp-avg": {"type": "spp", "levels": [1, 3], "mode": "avg"},
    "gap": {"type": "gap"},
}


@pytest.mark.parametrize("head,pool", [("spp", "max"), ("spp-avg", "avg"), ("gap", "mixed"), ("spp", "stochastic")])
def test_padded_batch_equals_one_by_one(head, pool):
    torch.manual_seed(0)
    backbone = {"type": "small_cnn", "width": 8, "pool": {"op": pool, "kernel": 2}}
    model = build_model({"backbone": backbone, "head": HEADS[head], "num_classes": 5}).eval()
    assert model.padding_invariant
    rng = np.random.default_rng(0)
    images = [rng.random((1, h, w), dtype=np.float32) for h, w in SIZES]
    x, valid = make_padded_batch(images)
    x[x == 0] = 0  # zero padding; garbage padding is covered below
    with torch.inference_mode():
        alone = np.concatenate([model(torch.from_numpy(im[None])).numpy() for im in images])
        batched = model(torch.from_numpy(x), torch.from_numpy(valid)).numpy()
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)

    sess = ort.InferenceSession(export_classifier(model, 1, valid=True).SerializeToString(), providers=["CPUExecutionProvider"])
    garbage = x.copy()
    for n, (h, w) in enumerate(valid):  # whatever the padding holds, it is ignored
        garbage[n, :, h:, :] = 7.0
        garbage[n, :, :, w:] = -3.0
    logits = sess.run(["logits"], {"x": garbage, "valid": valid})[0]
    np.testing.assert_allclose(logits, alone, rtol=1e-5, atol=1e-5)
    one = [sess.run(["logits"], {"x": im[None], "valid": np.array([im.shape[1:]], np.int64)})[0] for im in images]
    np.testing.assert_allclose(np.concatenate(one), alone, rtol=1e-5, atol=1e-5)


def test_resizing_models_refuse_valid():
    model = build_model(
        {"backbone": {"type": "small_cnn", "width": 4}, "head": {"type": "fixed", "feature_size": [8, 8]},
         "num_classes": 3, "resize": [32, 32]}
    )
    assert not model.padding_invariant
    with pytest.raises(ValueError, match="not padding-invariant"):
        model(torch.zeros(1, 1, 32, 32), torch.tensor([[32, 32]]))
