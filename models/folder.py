"""``poolops train --data DIR``: an SPP classifier from an image folder of arbitrary-size images.

``DIR/<class name>/*.{png,jpg,...}``, any sizes. Each training batch is resized to one
random size (multi-size training, as in the SPP paper); evaluation and the exported
model take every image at its own size. The small CNN learns from scratch; with
``--pretrained`` the ImageNet EfficientNet-Lite0 backbone is used (``--freeze`` keeps
it fixed and trains only the head).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Folder:
    paths: list[Path]
    labels: np.ndarray  # [n] int64
    classes: list[str]


def scan(root: str | Path) -> Folder:
    """Class subfolders of ``root`` (sorted) and their image files; ValueError if unusable."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [i] * len(files)
    counts = np.bincount(labels, minlength=len(classes)) if labels else np.zeros(len(classes), int)
    if len(classes) < 2 or (counts < 2).any():
        raise ValueError(
            f"--data {root}: need at least 2 class subfolders with at least 2 images each "
            f"(found {dict(zip(classes, counts.tolist()))})"
        )
    return Folder(paths, np.asarray(labels, np.int64), classes)


def read_image(path: Path, channels: int) -> np.ndarray:
    """``float32 [channels, H, W]`` in [0, 1]; EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _resize(img: np.ndarray, size: tuple[int, int]):
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(img)[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def batches(images: list[np.ndarray], labels: np.ndarray, steps: int, batch_size: int, size_range, seed: int) -> Iterator:
    """Batches of ``batch_size`` images all resized to one random size in ``size_range``."""
    import torch

    rng = np.random.default_rng(seed)
    (h0, h1), (w0, w1) = size_range
    for _ in range(steps):
        idx = rng.choice(len(images), size=batch_size, replace=len(images) < batch_size)
        size = (int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1)))
        x = torch.stack([_resize(images[i], size) for i in idx])
        yield x, torch.as_tensor(labels[idx])


def one_by_one(images: list[np.ndarray], labels: np.ndarray) -> Iterator:
    """Evaluation at native sizes: one image per batch."""
    for img, y in zip(images, labels):
        yield img[None], np.asarray([y])


def train_folder(
    data: str | Path,
    name: str,
    root: str | Path,
    head: dict[str, Any] | None = None,
    pretrained: bool = False,
    freeze: bool = False,
    steps: int = 300,
    batch_size: int = 16,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
):
    """Train, evaluate, plot, export and register; returns ``(registry entry, plot path)``."""
    import torch

    from models.classifier import build_model
    from models.export import export_classifier, max_parity_error
    from models.registry import save_model
    from models.train import accuracy, fit, plot_history

    folder = scan(data)
    channels = 3 if pretrained else 1
    images = [read_image(p, channels) for p in folder.paths]
    if pretrained:  # the ImageNet weights expect [-1, 1]
        images = [im * 2.0 - 1.0 for im in images]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = max(1, int(round(len(images) * val_fraction)))
    val, tr = order[:n_val], order[n_val:]
    sizes = np.array([im.shape[1:] for im in images])
    size_range = ((int(sizes[:, 0].min()), int(sizes[:, 0].max())), (int(sizes[:, 1].min()), int(sizes[:, 1].max())))
    # keep training batches affordable on a CPU: at most 128 px a side
    size_range = tuple((min(a, 128), min(max(b, a), 128)) for a, b in size_range)
    head = head or {"type": "spp", "levels": [1, 2, 4], "mode": "max"}
    backbone = {"type": "effnet_lite0"} if pretrained else {"type": "small_cnn", "width": 16}
    config = {"backbone": backbone, "head": head, "num_classes": len(folder.classes)}
    torch.manual_seed(seed)
    model = build_model(config)
    params = None
    if pretrained:
        from models.backbones.effnet_lite0 import load_pretrained

        load_pretrained(model.backbone)
        if freeze:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
            params = model.head.parameters()
    tr_images, tr_labels = [images[i] for i in tr], folder.labels[tr]
    val_images, val_labels = [images[i] for i in val], folder.labels[val]
    t0 = time.time()
    hist = fit(
        model,
        batches(tr_images, tr_labels, steps, batch_size, size_range, seed),
        steps,
        seed=seed,
        evaluate=lambda: accuracy(model, one_by_one(val_images, val_labels)),
        eval_every=max(steps // 5, 1),
        progress=progress,
        params=params,
    )
    seconds = time.time() - t0
    proto = export_classifier(model, channels, valid=model.padding_invariant)
    parity = max_parity_error(model, proto, channels, [(32, 32), (57, 83)])
    val_acc = hist.eval_acc[-1]
    card = {
        "name": name,
        "task": "image classification (image folder)",
        "description": f"SPP classifier trained by `poolops train` on {Path(data).resolve()}",
        "labels": folder.classes,
        "preprocessing": {
            "color": "RGB" if pretrained else "grayscale",
            "scale": "[-1, 1] (x / 127.5 - 1)" if pretrained else "pixel / 255 -> [0, 1]",
            "resize": "none: the model takes any size",
        },
        "backbone": {**backbone, "pretrained": pretrained, "frozen": freeze},
        "head": head,
        "input": {"name": "x", "channels": channels, "min_size": [16, 16], "max_size": [1024, 1024]},
        "padding_invariant": model.padding_invariant,
        "metrics": [
            {"name": "accuracy_validation", "value": round(val_acc, 4),
             "data": f"{len(val)} held-out images of {data} at their own sizes"}
        ],
        "produced_by": f"poolops train --data {data} --name {name}" + (" --pretrained" if pretrained else "")
        + (" --freeze" if freeze else "") + f" --steps {steps} --seed {seed}",
        "extra": {"train_images": len(tr), "seconds": round(seconds, 1), "training_sizes": size_range,
                  "onnx_vs_torch_max_rel_error": parity},
    }
    if pretrained:
        from models.backbones.effnet_lite0 import PREPROCESS

        card["preprocessing"] = PREPROCESS
    entry = save_model(root, proto, card)
    plot = plot_history(hist, Path(root) / name / "training.png", title=f"{name}: {len(tr)} images, {steps} steps")
    return entry, plot
