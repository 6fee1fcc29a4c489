"""Small models built like the common CNN families, with PyTorch's own pooling.

Each factory copies its family's pooling configuration (module or ``F.`` call, kernel,
stride, padding, ceil mode, output sizes) from torchvision's and timm's definitions at
reduced widths, so the exporters can be compared on what users actually export
(torchvision's wheel does not import with the CPU torch used here). :func:`export_table`
exports each with PyTorch's dynamo exporter, its TorchScript exporter and
``poolops.onnx.export`` at one size and runs the graphs at six others:
``python -m poolops_models.stock_families --markdown > docs/export_families.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

EXAMPLE = (1, 3, 64, 64)
SIZES = ((37, 53), (100, 31), (48, 48), (33, 90), (129, 40), (40, 36))  # odd, tall, wide, smaller


def _conv(cin, cout, k=3, s=1, p=None, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=False), nn.BatchNorm2d(cout), act())


class VGG(nn.Module):
    """torchvision VGG: MaxPool2d(2, 2) stages, AdaptiveAvgPool2d((7, 7)), Flatten, Linear."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(kernel_size=2, stride=2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(kernel_size=2, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(True))
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(True))
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(True))

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class SqueezeNet(nn.Module):
    """torchvision SqueezeNet 1.0: MaxPool2d(3, 2, ceil_mode=True), conv classifier, AdaptiveAvgPool2d((1, 1))."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 7, stride=2), nn.ReLU(True),
                                      nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True), Fire(16, 4, 8, 8),
                                      nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True), Fire(16, 4, 8, 8))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(16, classes, 1), nn.ReLU(True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class Inception(nn.Module):
    """GoogLeNet's block: its pool branch is MaxPool2d(3, 1, 1, ceil_mode=True)."""

    def __init__(self, cin, c1, c3, cp):
        super().__init__()
        self.b1 = _conv(cin, c1, 1)
        self.b2 = _conv(cin, c3, 3)
        self.b4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True), _conv(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    """torchvision GoogLeNet: MaxPool2d(3, 2, ceil_mode=True), Inception blocks, AdaptiveAvgPool2d((1, 1)),
    and the pooling named in the export issue: AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    AdaptiveMaxPool2d((3, 5))."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = _conv(3, 8, 7, 2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception = Inception(8, 4, 8, 4)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avgpool2 = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.side = nn.AdaptiveMaxPool2d((3, 5))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16 + 16 * 15, classes)

    def forward(self, x):
        x = self.inception(self.maxpool1(self.conv1(x)))
        x = self.avgpool2(self.maxpool2(x))
        return self.fc(torch.cat([torch.flatten(self.avgpool(x), 1), torch.flatten(self.side(x), 1)], 1))


class InceptionV3(nn.Module):
    """torchvision Inception v3's functional pooling: F.max_pool2d(x, 3, 2), the pool branch
    F.avg_pool2d(x, 3, 1, 1), F.adaptive_avg_pool2d(x, (1, 1))."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = _conv(3, 8, 3, 2, 0)
        self.b1 = _conv(8, 8, 1)
        self.bp = _conv(8, 8, 1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), kernel_size=3, stride=2)
        x = torch.cat([self.b1(x), self.bp(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))], 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.c2 = _conv(cin, cout, 3, stride), nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                                                       nn.BatchNorm2d(cout))
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.c2(self.c1(x)) + self.down(x))


class ResNet(nn.Module):
    """torchvision ResNet: 7x7/2 stem, MaxPool2d(3, 2, 1), blocks, AdaptiveAvgPool2d((1, 1)), fc."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = _conv(3, 8, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.layer(self.maxpool(self.stem(x)))), 1))


class DenseNet(nn.Module):
    """torchvision DenseNet: MaxPool2d(3, 2, 1) after the stem, transition AvgPool2d(2, 2),
    F.adaptive_avg_pool2d(out, (1, 1)) in forward."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(True),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.dense = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(True), nn.Conv2d(8, 8, 3, padding=1, bias=False))
        self.transition = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(True), nn.Conv2d(16, 16, 1, bias=False),
                                        nn.AvgPool2d(kernel_size=2, stride=2))
        self.norm = nn.BatchNorm2d(16)
        self.classifier = nn.Linear(16, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.norm(self.transition(torch.cat([x, self.dense(x)], 1)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), (1, 1)), 1))


class SEFunctional(nn.Module):
    """MobileNetV3's squeeze-excite as torchvision first wrote it: F.adaptive_avg_pool2d(x, 1)."""

    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class MobileNetV3(nn.Module):
    """torchvision MobileNetV3: SE blocks with adaptive average pooling to 1, hardswish,
    final nn.AdaptiveAvgPool2d(1)."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(_conv(3, 8, 3, 2, act=nn.Hardswish), _conv(8, 16, 3, 2, act=nn.Hardswish),
                                      SEFunctional(16), _conv(16, 16, 1, act=nn.Hardswish))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: an nn.AdaptiveAvgPool2d(1) module."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(self.avgpool(x)))))


class EfficientNet(nn.Module):
    """torchvision EfficientNet: MBConv with SqueezeExcitation, SiLU, AdaptiveAvgPool2d(1)."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(_conv(3, 8, 3, 2, act=nn.SiLU),
                                      nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8),
                                                    nn.SiLU(), SqueezeExcitation(8, 2), _conv(8, 16, 1, act=nn.SiLU)),
                                      _conv(16, 16, 3, 2, act=nn.SiLU))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: AdaptiveAvgPool2d(bin) for bins 1, 2, 3, 6, a 1x1 conv
    each, bilinear interpolation back to the map's size, concatenated with the map."""

    def __init__(self, c, bins=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(c, c // 4, 1), nn.ReLU(True))
                                    for b in bins)

    def forward(self, x):
        size = x.shape[2:]
        return torch.cat([x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
                                for s in self.stages], 1)


class PSPNet(nn.Module):
    """A dense head: stride-4 features, the pyramid pooling module, a 1x1 classifier per pixel."""

    def __init__(self, classes=5):
        super().__init__()
        self.backbone = nn.Sequential(_conv(3, 8, 3, 2), _conv(8, 16, 3, 2))
        self.ppm = PyramidPooling(16)
        self.head = nn.Conv2d(32, classes, 1)

    def forward(self, x):
        return self.head(self.ppm(self.backbone(x)))


class TimmHead(nn.Module):
    """timm's SelectAdaptivePool2d pool types: 'avg', 'max', 'avgmax' (mean of both),
    'catavgmax' (both concatenated), then flatten and a linear classifier."""

    def __init__(self, pool_type="avg", classes=10):
        super().__init__()
        self.pool_type = pool_type
        self.features = nn.Sequential(_conv(3, 8, 3, 2), _conv(8, 16, 3, 2))
        self.fc = nn.Linear(32 if pool_type == "catavgmax" else 16, classes)

    def forward(self, x):
        x = self.features(x)
        if self.pool_type == "avg":
            x = F.adaptive_avg_pool2d(x, 1)
        elif self.pool_type == "max":
            x = F.adaptive_max_pool2d(x, 1)
        elif self.pool_type == "avgmax":
            x = 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1))
        else:
            x = torch.cat((F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)), 1)
        return self.fc(torch.flatten(x, 1))


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "VGG": VGG,
    "SqueezeNet": SqueezeNet,
    "GoogLeNet": GoogLeNet,
    "Inception v3": InceptionV3,
    "ResNet": ResNet,
    "DenseNet": DenseNet,
    "MobileNetV3": MobileNetV3,
    "EfficientNet": EfficientNet,
    "PSPNet pyramid pooling": PSPNet,
    "timm head avg": lambda: TimmHead("avg"),
    "timm head max": lambda: TimmHead("max"),
    "timm head avgmax": lambda: TimmHead("avgmax"),
    "timm head catavgmax": lambda: TimmHead("catavgmax"),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The family's model, seeded, in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    m = FAMILIES[name]()
    for mod in m.modules():  # eval-mode BatchNorm with running stats other than 0 / 1
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


# ---- the exporters compared ---------------------------------------------------------
def _dynamo(model, x):
    d = torch.export.Dim.DYNAMIC
    return torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], dynamic_shapes=({0: d, 2: d, 3: d},),
                             verbose=False).model_proto


def _torchscript(model, x):
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], opset_version=18,
                      dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    import onnx

    return onnx.load_from_string(buf.getvalue())


def _poolops(model, x):
    from poolops.onnx import export

    return export(model, x, check_sizes=False)


EXPORTERS: dict[str, Callable] = {"dynamo exporter": _dynamo, "TorchScript exporter": _torchscript,
                                  "poolops.onnx.export": _poolops}


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    for marker in ("## Exception summary", "Exception summary"):
        if marker in text:
            text = text.split(marker, 1)[1]
    return f"{type(e).__name__}: {text[:110]}".replace("|", "/")


def try_export(name: str, exporter: str, sizes=SIZES) -> dict:
    """``{"status": "pass" | "wrong" | "fails" | "no export", "worst": float | None,
    "detail": str}`` for one family and one exporter, over ``sizes``."""
    import warnings

    from poolops.onnx.dynamic import check_dynamic

    model = build(name)
    x = torch.randn(*EXAMPLE)
    try:
        # the exporters print graphs and progress: keep the table's output clean
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            proto = EXPORTERS[exporter](model, x)
    except Exception as e:  # noqa: BLE001 - the table records it
        return {"status": "no export", "worst": None, "detail": _short(e)}
    checks = check_dynamic(model, proto, sizes, example=x)
    failed = [c for c in checks if c.error is not None]
    worst = max((c.worst_error for c in checks if c.worst_error is not None), default=None)
    if failed:
        c = failed[0]
        return {"status": "fails", "worst": worst, "detail": f"{len(failed)}/{len(checks)} sizes fail; "
                f"{c.size[0]}x{c.size[1]}: {c.error[:110]}".replace("|", "/")}
    if not all(c.ok for c in checks):
        return {"status": "wrong", "worst": worst, "detail": f"error {worst:.2g} at some sizes"}
    return {"status": "pass", "worst": worst, "detail": ""}


def export_table(families=None, exporters=None) -> list[dict]:
    rows = []
    for name in families or FAMILIES:
        for exporter in exporters or EXPORTERS:
            t0 = time.perf_counter()
            r = try_export(name, exporter)
            rows.append({"family": name, "exporter": exporter, **r, "seconds": time.perf_counter() - t0})
    return rows


def markdown(rows: list[dict]) -> str:
    exporters = list(dict.fromkeys(r["exporter"] for r in rows))
    lines = [
        "# Exporting unmodified PyTorch models with dynamic H and W",
        "",
        "Made by `python -m poolops_models.stock_families --markdown > docs/export_families.md`. Each model "
        f"(`models/stock_families.py`: the family's pooling at reduced widths) is exported at "
        f"{EXAMPLE[2]}x{EXAMPLE[3]} with N, H and W dynamic, then run in ONNX Runtime (CPU) at "
        + ", ".join(f"{h}x{w}" for h, w in SIZES)
        + " against torch eager. Cells: pass (worst error relative to the output's scale, at most 1e-4), "
        "wrong (runs, but differs), fails (errors at some sizes), no export (the exporter refuses).",
        f"torch {torch.__version__}.",
        "",
        "| family | " + " | ".join(exporters) + " |",
        "|---|" + "---|" * len(exporters),
    ]
    by = {(r["family"], r["exporter"]): r for r in rows}
    for fam in dict.fromkeys(r["family"] for r in rows):
        cells = []
        for ex in exporters:
            r = by[fam, ex]
            cell = r["status"] + (f" ({r['worst']:.1e})" if r["worst"] is not None and r["status"] != "fails" else "")
            cells.append(cell)
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    notes = [f"- {r['family']}, {r['exporter']}: {r['detail']}" for r in rows if r["detail"]]
    if notes:
        lines += ["", "What failed:", ""] + notes
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the Markdown table (docs/export_families.md)")
    ap.add_argument("--family", action="append", help="only this family (repeatable)")
    args = ap.parse_args(argv)
    rows = export_table(args.family)
    if args.markdown:
        print(markdown(rows), end="")
    else:
        for r in rows:
            worst = "" if r["worst"] is None else f"{r['worst']:.1e}"
            print(f"{r['family']:24s} {r['exporter']:22s} {r['status']:10s} {worst:8s} {r['detail']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
