"""The built-in models: one recipe each (data, architecture, training, seeds), built by
``poolops export [NAME ...]`` into the registry directory (``models/zoo/`` by default).

Each build trains (or converts) the model with fixed seeds, evaluates it on held-out
data at the training size range and at larger unseen sizes, exports it to ONNX with
dynamic N, H, W, checks ONNX Runtime against torch and writes the model folder.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZOO = Path(__file__).resolve().parent / "zoo"


def zoo_dir() -> Path:
    """The registry directory (``POOLOPS_MODELS_DIR`` overrides ``models/zoo``)."""
    return Path(os.environ.get("POOLOPS_MODELS_DIR", ZOO))


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: str
    config: dict[str, Any]
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    fixed_size: tuple[int, int] | None = None  # single-size training
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


SMALL = {"type": "small_cnn", "width": 16, "pool": {"op": "max", "kernel": 2}}
SPP_HEAD = {"type": "spp", "levels": [1, 2, 4], "mode": "max"}


def _recipes() -> dict[str, Recipe]:
    def classifier(head, n, resize=None):
        return {"backbone": SMALL, "head": head, "num_classes": n, "resize": resize}

    fixed_head = {"type": "fixed", "feature_size": [8, 8]}
    r = [
        Recipe("digits-spp", "digits", classifier(SPP_HEAD, 10),
               description="Handwritten digits at any size and position: small CNN + SPP head (levels 1, 2, 4)."),
        Recipe("digits-gap", "digits", classifier({"type": "gap"}, 10),
               description="Baseline for digits-spp: the same backbone with global average pooling."),
        Recipe("digits-fixed", "digits", classifier(fixed_head, 10, resize=[32, 32]),
               description="Baseline for digits-spp: every image resized to 32x32, flattened features, linear layer."),
        Recipe("layout-spp", "layout", classifier(SPP_HEAD, 4),
               description="Where is the square relative to the cross? Small CNN + SPP head (levels 1, 2, 4)."),
        Recipe("layout-gap", "layout", classifier({"type": "gap"}, 4),
               description="Baseline for layout-spp: global average pooling cannot see where things are."),
    ]
    return {x.name: x for x in r}


RECIPES = _recipes()
BUILTIN = [*RECIPES, "effnet-lite0-imagenet"]


def _data(dataset: str, recipe: Recipe):
    """(training batches, {eval name: (batches, description)})"""
    from models.data import get_dataset

    ds = get_dataset(dataset)
    size = recipe.fixed_size
    if dataset == "digits":
        train_ids, test_ids = ds.split(seed=0)
        train = ds.batches(train_ids, recipe.steps, recipe.batch_size, seed=recipe.seed, fixed_size=size)
        evals = {
            "seen": (ds.eval_set(test_ids, ds.SEEN_SIZES), f"{len(test_ids)} held-out digits x 4 sizes in {ds.SEEN_SIZES}"),
            "unseen": (ds.eval_set(test_ids, ds.UNSEEN_SIZES), f"{len(test_ids)} held-out digits x 4 sizes in {ds.UNSEEN_SIZES}"),
        }
    else:
        train = ds.batches(recipe.steps, recipe.batch_size, seed=recipe.seed, fixed_size=size)
        evals = {
            "seen": (ds.eval_set(ds.SEEN_SIZES), f"2048 held-out images, 4 sizes in {ds.SEEN_SIZES}"),
            "unseen": (ds.eval_set(ds.UNSEEN_SIZES), f"2048 held-out images, 4 sizes in {ds.UNSEEN_SIZES}"),
        }
    return ds, train, evals


def train_recipe(recipe: Recipe, progress: bool = True):
    """Train a recipe; returns ``(model, dataset module, metrics, history)``."""
    import torch

    from models.classifier import build_model
    from models.train import accuracy, fit

    torch.manual_seed(recipe.seed)
    model = build_model(recipe.config)
    ds, train, evals = _data(recipe.dataset, recipe)
    hist = fit(model, train, recipe.steps, lr=recipe.lr, seed=recipe.seed, progress=progress)
    metrics = [
        {"name": f"accuracy_{k}_sizes", "value": round(accuracy(model, batches), 4), "data": desc}
        for k, (batches, desc) in evals.items()
    ]
    return model, ds, metrics, hist


def build(name: str, root: Path | None = None, progress: bool = True):
    """Build one built-in model into the registry; returns the registry entry."""
    if name == "effnet-lite0-imagenet":
        from models.effnet_zoo import build_effnet

        return build_effnet(root or zoo_dir())
    if name not in RECIPES:
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(BUILTIN)}")
    import torch

    from models.export import export_classifier, max_parity_error
    from models.registry import save_model

    torch.set_num_threads(os.cpu_count() or 1)
    recipe = RECIPES[name]
    t0 = time.time()
    model, ds, metrics, hist = train_recipe(recipe, progress)
    train_s = time.time() - t0
    invariant = model.padding_invariant
    proto = export_classifier(model, ds.CHANNELS, valid=invariant)
    sizes = [(24, 24), (37, 61), (64, 64), (128, 96)]
    parity = max_parity_error(model, proto, ds.CHANNELS, sizes)
    if parity > 1e-4:
        raise RuntimeError(f"{name}: ONNX Runtime differs from torch by {parity:g} of the logits' scale")
    head = recipe.config["head"]
    card = {
        "name": name,
        "task": f"image classification ({recipe.dataset})",
        "description": recipe.description + " " + ds.DESCRIPTION,
        "labels": ds.LABELS,
        "preprocessing": {
            "color": "grayscale",
            "scale": "pixel / 255 -> [0, 1]; white (high) ink on black (0) background",
            "resize": "none: the model takes any size" if not recipe.config.get("resize")
            else f"inside the model to {recipe.config['resize']} (bilinear)",
        },
        "backbone": recipe.config["backbone"],
        "head": {**head, "resize": recipe.config.get("resize")},
        "input": {"name": "x", "channels": ds.CHANNELS, "min_size": [8, 8], "max_size": [1024, 1024]},
        "padding_invariant": invariant,
        "metrics": metrics,
        "produced_by": f"poolops export {name}",
        "extra": {
            "training": {
                "steps": recipe.steps, "batch_size": recipe.batch_size, "lr": recipe.lr, "seed": recipe.seed,
                "sizes": "fixed " + str(recipe.fixed_size) if recipe.fixed_size else f"random per batch in {ds.SEEN_SIZES}",
                "seconds": round(train_s, 1), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "final_loss": round(sum(hist.loss[-20:]) / min(20, len(hist.loss)), 4),
            },
            "onnx_vs_torch_max_rel_error": parity,
        },
    }
    return save_model(root or zoo_dir(), proto, card)


def missing_builtins(root: Path | None = None, names: list[str] | None = None) -> list[str]:
    """The named built-in models (default: all) that are missing or broken in the registry."""
    from models.registry import load_registry

    current = load_registry(Path(root or zoo_dir()))
    return [n for n in (names or BUILTIN) if not (n in current and current[n].available)]


def ensure_built(names: list[str] | None = None, root: Path | None = None, progress: bool = False) -> list:
    """Build the named built-in models (default: all) that are missing or broken; what
    uses a built-in model calls this first, so a fresh clone builds what is not committed."""
    return [build(n, root or zoo_dir(), progress) for n in missing_builtins(root, names)]


def main_export(names: list[str] | None = None, root: Path | None = None, progress: bool = True) -> list:
    """``poolops export``: build the named (default: all missing or broken) built-in models."""
    out = []
    for n in names or missing_builtins(root):
        entry = build(n, root or zoo_dir(), progress)
        print(json.dumps({"model": n, "available": entry.available, "metrics": [m.model_dump() for m in entry.card.metrics]}))
        out.append(entry)
    return out
