"""``poolops export-torch``: an unmodified PyTorch model to ONNX, checked at other sizes,
optionally registered as a served model.

``export_torch("package.module:factory", example=(1, 3, 224, 224), out=...)`` imports
the factory (a callable returning an ``nn.Module``, or a module instance), exports it
with :func:`poolops.onnx.export` (PyTorch's own pooling through poolops' graphs, N, H and
W dynamic), runs the graph against torch at the check sizes and reports the worst
error per size. With ``register``, it writes ``<root>/<name>/`` (``model.onnx``,
``card.json``, ``labels.txt``) so that ``poolops serve`` serves it: the card's size
limits are the smallest and largest sizes checked, never wider.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np


def load_factory(target: str):
    """``package.module:attr`` -> the ``nn.Module`` (``attr`` called if it is not one)."""
    import torch

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r}: give package.module:factory (a callable returning an nn.Module)")
    if str(Path.cwd()) not in sys.path:  # a module next to where the command runs
        sys.path.insert(0, str(Path.cwd()))
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    model = obj if isinstance(obj, torch.nn.Module) else obj()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{target} gave a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"37x53,100x31"`` -> ``[(37, 53), (100, 31)]``."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        h, sep, w = part.lower().partition("x")
        if not sep or not h.isdigit() or not w.isdigit() or int(h) < 1 or int(w) < 1:
            raise ValueError(f"size {part!r}: give HxW, e.g. 37x53")
        sizes.append((int(h), int(w)))
    return sizes


def export_torch(target: str, example: Sequence[int], out: Path | None = None,
                 check: Sequence[tuple[int, int]] | None = None, register: str | None = None,
                 root: Path | None = None, labels: Sequence[str] | None = None, task: str = "image classification",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 stock_pooling: bool = True, command: str = "") -> dict:
    """Export, check and (optionally) register; returns ``{"path", "checks", "registered"}``."""
    import torch

    from poolops.onnx import export
    from poolops.onnx.dynamic import check_dynamic, probe_sizes

    if len(example) != 4 or any(int(v) < 1 for v in example):
        raise ValueError(f"--example: give N,C,H,W (e.g. 1,3,224,224), got {list(example)}")
    model = load_factory(target)
    x = torch.randn(*[int(v) for v in example])
    h, w = int(example[2]), int(example[3])
    sizes = list(check) if check else probe_sizes(h, w)
    folder = None
    if register:
        from poolops_models.recipes import zoo_dir

        folder = Path(root or zoo_dir()) / register
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "model.onnx"
    if out is None:
        raise ValueError("give --out PATH or --register NAME")
    names = ["logits"] if register else None
    proto = export(model, x, out, output_names=names, stock_pooling=stock_pooling, check_sizes=sizes)
    checks = check_dynamic(model, proto, sizes, example=x)
    report = {"path": str(out), "checks": checks, "registered": None}
    if folder is not None:
        report["registered"] = str(_register(folder, register, model, x, target, sizes, labels, task, mean, std,
                                             command or f"poolops export-torch {target}"))
    return report


def _register(folder: Path, name: str, model, x, target, sizes, labels, task, mean, std, command) -> Path:
    import torch

    from poolops_models.cards import CARD, LABELS, MODEL, ModelCard, sha256_file, validate

    with torch.no_grad():
        n_out = int(np.prod(model(x).shape[1:]))
    labels = list(labels) if labels else [str(i) for i in range(n_out)]
    if len(labels) != n_out:
        shutil.rmtree(folder, ignore_errors=True)
        raise ValueError(f"{len(labels)} labels for {n_out} outputs: give one label per output")
    c = int(x.shape[1])
    all_sizes = sizes + [(int(x.shape[2]), int(x.shape[3]))]
    preprocessing = {"color": "rgb" if c == 3 else "grayscale", "scale": "pixel / 255 -> [0, 1]"}
    if mean is not None:
        preprocessing["mean"] = [float(v) for v in mean]
    if std is not None:
        preprocessing["std"] = [float(v) for v in std]
    card = ModelCard(
        name=name, task=task,
        description=f"{target} exported by poolops export-torch (PyTorch's own pooling through poolops' graphs, "
                    "N, H and W dynamic); its size limits are the sizes it was checked at against torch",
        labels=labels, preprocessing=preprocessing,
        backbone={"type": "torch", "source": target}, head={"type": "the model's own"},
        input={"name": "x", "channels": c, "min_size": (min(s[0] for s in all_sizes), min(s[1] for s in all_sizes)),
               "max_size": (max(s[0] for s in all_sizes), max(s[1] for s in all_sizes))},
        outputs=["logits"], padding_invariant=False,
        sha256=sha256_file(folder / MODEL), produced_by=command,
    )
    (folder / CARD).write_text(json.dumps(card.model_dump(mode="json"), indent=1) + "\n")
    (folder / LABELS).write_text("\n".join(labels) + "\n")
    entry = validate(folder)
    if not entry.available:
        raise ValueError(f"the registered model is not servable: {entry.reason}")
    return folder
