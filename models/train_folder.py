"""``poolops train --data DIR``: an SPP classifier from an image folder of arbitrary-size images.

``DIR/<class name>/*.{png,jpg,...}``, any sizes. The small CNN (the default) learns from
scratch with the built-in models' multi-size recipe (``models/recipes.py`` MULTISIZE,
:func:`multisize_batches`): each batch gets a shorter side S in the recipe's range, every image
is resized to it keeping its aspect (30% of the batches first shrunk to a shorter side in
16..S, as small images scaled up by the policy look), zero-padded to the batch's largest and
fed with its valid size (the model is padding-invariant). The card's size policy is chosen on
the validation split among the built-in candidates (best worst size bucket), and the card and
the report give the validation accuracy per size bucket (by each image's shorter side).

With ``--pretrained`` the ImageNet EfficientNet-Lite0 backbone is used (``--freeze`` keeps it
fixed and trains only the head), with the same multi-size recipe at the backbone's own scale
(:data:`PRETRAINED_MULTISIZE`: shorter side 128..224) and the same policy selection among
:data:`PRETRAINED_POLICIES`. It is not padding-invariant, so a batch cannot be zero-padded:
each image is resized to the batch's shorter side S (aspect kept, the same low-resolution
simulation) and a random S x S window of it is taken (training only: the size policy keeps the
whole image at inference). ``multisize=False`` keeps the older recipe (each batch resized to
one random size, no size policy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from poolops.ops.spp import DEFAULT_LEVELS

#: The multi-size recipe for the pretrained EfficientNet-Lite0 backbone: its ImageNet scale
#: (trained at 224), not the small CNN's 32..48 (models/recipes.py MULTISIZE).
PRETRAINED_MULTISIZE = {"shorter_side": [128, 224], "max_aspect": 4.0, "upscaled": 0.3, "source_min": 16}
#: Size policies tried on the validation split for the pretrained backbone.
PRETRAINED_POLICIES = tuple({"shorter_side": p} for p in ([128, 128], [160, 160], [192, 192], [224, 224], [128, 224]))

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


def _policy_resize(img: np.ndarray, policy, limits=None) -> np.ndarray:
    """``[C, H, W]`` resized by a size policy through ``models/size_policy.apply`` (the server's path)."""
    from poolops_models import size_policy

    return np.ascontiguousarray(size_policy.apply(np.ascontiguousarray(img.transpose(1, 2, 0)), policy,
                                                  limits).transpose(2, 0, 1))


def multisize_batches(images: list[np.ndarray], labels: np.ndarray, steps: int, batch_size: int, seed: int,
                      recipe: dict[str, Any], padded: bool = True) -> Iterator:
    """``(x [B, C, H, W] zero-padded, y [B], valid [B, 2])``: per batch a shorter side S in
    ``recipe["shorter_side"]``; each image resized to it, aspect kept (at most ``max_aspect``: a
    longer side beyond is cut to it); with probability ``upscaled`` first shrunk to a shorter side
    in ``[source_min, S)``. ``padded=False`` (a backbone that is not padding-invariant):
    ``(x [B, C, S, S], y [B])``, a random S x S window of each resized image instead."""
    rng = np.random.default_rng([0x666F6C64, int(seed)])
    lo, hi = recipe["shorter_side"]
    max_aspect = float(recipe.get("max_aspect", 4.0))
    for _ in range(steps):
        idx = rng.choice(len(images), size=batch_size, replace=len(images) < batch_size)
        s = int(rng.integers(lo, hi + 1))
        s0 = int(rng.integers(recipe.get("source_min", 16), s)) if (
            s > recipe.get("source_min", 16) and rng.uniform() < recipe.get("upscaled", 0.0)) else None
        out = []
        for i in idx:
            im = images[i]
            if s0 is not None:
                im = _policy_resize(im, {"shorter_side": [s0, s0]})
            im = _policy_resize(im, {"shorter_side": [s, s]})
            if not padded:
                top = int(rng.integers(0, im.shape[1] - s + 1))
                left = int(rng.integers(0, im.shape[2] - s + 1))
                out.append(im[:, top:top + s, left:left + s])
                continue
            long = int(s * max_aspect)
            out.append(im[:, :long, :long])
        if not padded:
            yield np.ascontiguousarray(np.stack(out), np.float32), labels[idx]
            continue
        h, w = max(o.shape[1] for o in out), max(o.shape[2] for o in out)
        x = np.zeros((len(out), out[0].shape[0], h, w), np.float32)
        for j, o in enumerate(out):
            x[j, :, : o.shape[1], : o.shape[2]] = o
        yield x, labels[idx], np.array([o.shape[1:] for o in out], np.int64)


def size_buckets(images: list[np.ndarray]) -> list[tuple[int, int]]:
    """The size buckets of ``poolops experiments`` (by the shorter side; below 16 and above 512
    as their own) that ``images`` fall in, in order."""
    from poolops_models.experiments import BUCKETS

    edges = [(1, BUCKETS[0][0] - 1), *BUCKETS, (BUCKETS[-1][1] + 1, 1 << 30)]
    shorts = [min(im.shape[1:]) for im in images]
    return [b for b in edges if any(b[0] <= s <= b[1] for s in shorts)]


def per_size_accuracy(model, images: list[np.ndarray], labels: np.ndarray, policy=None, limits=None):
    """``(overall, [((lo, hi), accuracy, count)])``: one by one, each image resized by ``policy``
    (None: at its own size), grouped by its *original* shorter side."""
    from poolops_models.train import accuracy

    fed = [im if policy is None else _policy_resize(im, policy, limits) for im in images]
    correct = [accuracy(model, [(f[None], np.asarray([y]))]) for f, y in zip(fed, labels)]
    shorts = np.array([min(im.shape[1:]) for im in images])
    rows = []
    for lo, hi in size_buckets(images):
        sel = (shorts >= lo) & (shorts <= hi)
        rows.append(((lo, hi), float(np.mean(np.asarray(correct)[sel])), int(sel.sum())))
    return float(np.mean(correct)), rows


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
    multisize: bool = True,
):
    """Train, evaluate, plot, export and register; returns ``(registry entry, plot path)``.
    ``multisize=False``: the older recipe (one random size per batch, no size policy)."""
    import torch

    from poolops_models.classifier import build_model
    from poolops_models.export import export_classifier, max_parity_error
    from poolops_models.cards import save_model
    from poolops_models.train import accuracy, fit, plot_history

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
    head = head or {"type": "spp", "levels": list(DEFAULT_LEVELS), "mode": "max"}
    # the small CNN: the built-in models' backbone (4 stages) with the multi-size recipe, else 3 stages
    backbone = {"type": "effnet_lite0"} if pretrained else (
        {"type": "small_cnn", "width": 16, "stages": 4} if multisize else {"type": "small_cnn", "width": 16})
    config = {"backbone": backbone, "head": head, "num_classes": len(folder.classes)}
    torch.manual_seed(seed)
    model = build_model(config)
    params = None
    if pretrained:
        from poolops_models.backbones.effnet_lite0 import load_pretrained

        load_pretrained(model.backbone)
        if freeze:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
            params = model.head.parameters()
    tr_images, tr_labels = [images[i] for i in tr], folder.labels[tr]
    val_images, val_labels = [images[i] for i in val], folder.labels[val]
    from poolops_models import size_policy
    from poolops_models.recipes import MULTISIZE, POLICIES

    multi = multisize
    recipe_params, candidates = (PRETRAINED_MULTISIZE, PRETRAINED_POLICIES) if pretrained else (MULTISIZE, POLICIES)
    limits = ((32, 32), (1024, 1024)) if pretrained else ((16, 16), (1024, 1024))
    train_batches = (multisize_batches(tr_images, tr_labels, steps, batch_size, seed, recipe_params,
                                       padded=model.padding_invariant) if multi
                     else batches(tr_images, tr_labels, steps, batch_size, size_range, seed))
    t0 = time.time()
    hist = fit(
        model,
        train_batches,
        steps,
        seed=seed,
        evaluate=lambda: accuracy(model, one_by_one(val_images, val_labels)),
        eval_every=max(steps // 5, 1),
        progress=progress,
        params=params,
    )
    seconds = time.time() - t0
    # the size policy: the best worst size bucket of the validation split (multi-size recipe only)
    policy, tried = None, {}
    if multi:
        for p in candidates:
            acc, rows = per_size_accuracy(model, val_images, val_labels, p, limits)
            tried[size_policy.describe(p)] = (p, acc, rows)
        policy = max(tried.values(), key=lambda t: (min(r[1] for r in t[2]), t[1]))[0]
    val_acc, val_rows = per_size_accuracy(model, val_images, val_labels, policy, limits)
    raw_acc, raw_rows = per_size_accuracy(model, val_images, val_labels, None) if policy else (val_acc, val_rows)
    proto = export_classifier(model, channels, valid=model.padding_invariant)
    parity = max_parity_error(model, proto, channels, [(32, 32), (57, 83)])
    how = f"size policy {size_policy.describe(policy)}" if policy else "each at its own size"
    recipe = (f"multi-size (models/train_folder.py, recipe {recipe_params}, "
              + ("zero-padded batches)" if model.padding_invariant else "random S x S windows)") if multi
              else f"each batch resized to one random size in {size_range}")
    card = {
        "name": name,
        "task": "image classification (image folder)",
        "description": f"SPP classifier trained by `poolops train` on {Path(data).resolve()}",
        "labels": folder.classes,
        "preprocessing": {
            "color": "RGB" if pretrained else "grayscale",
            "scale": "[-1, 1] (x / 127.5 - 1)" if pretrained else "pixel / 255 -> [0, 1]",
            "resize": f"by the size policy ({size_policy.describe(policy)})" if policy else "none: the model takes any size",
        },
        "backbone": {**backbone, "pretrained": pretrained, "frozen": freeze},
        "head": head,
        "input": {"name": "x", "channels": channels, "min_size": list(limits[0]), "max_size": list(limits[1])},
        "padding_invariant": model.padding_invariant,
        "size_policy": policy,
        "metrics": [
            {"name": "accuracy_validation", "value": round(val_acc, 4),
             "data": f"{len(val)} held-out images of {data}, {how}"},
            *({"name": f"accuracy_validation_shorter_side_{lo}-{hi}", "value": round(a, 4),
               "data": f"the {n} of the {len(val)} held-out images whose shorter side is {lo}..{hi} px, {how}"}
              for (lo, hi), a, n in val_rows),
        ],
        "produced_by": f"poolops train --data {data} --name {name}" + (" --pretrained" if pretrained else "")
        + (" --freeze" if freeze else "") + f" --steps {steps} --seed {seed}",
        "extra": {"train_images": len(tr), "seconds": round(seconds, 1), "training_sizes": recipe,
                  "onnx_vs_torch_max_rel_error": parity,
                  "validation_without_size_policy": {
                      "accuracy": round(raw_acc, 4),
                      "per_size": {f"{lo}-{hi}": round(a, 4) for (lo, hi), a, _ in raw_rows}},
                  **({"size_policy_selection": {k: {"accuracy": round(v[1], 4),
                                                    "per_size": {f"{lo}-{hi}": round(a, 4) for (lo, hi), a, _ in v[2]}}
                                                for k, v in tried.items()}} if tried else {})},
    }
    if pretrained:
        from poolops_models.backbones.effnet_lite0 import PREPROCESS

        card["preprocessing"] = PREPROCESS
    entry = save_model(root, proto, card)
    plot = plot_history(hist, Path(root) / name / "training.png", title=f"{name}: {len(tr)} images, {steps} steps")
    return entry, plot
