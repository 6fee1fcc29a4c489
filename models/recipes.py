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

from poolops.ops.spp import DEFAULT_LEVELS

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
    #: multi-size training with scale augmentation (models/multisize.py); None: the old recipe
    #: (sizes random per batch in the dataset's SEEN_SIZES, objects at the dataset's default scale)
    multisize: dict[str, Any] | None = None
    #: size policies tried on validation data; the card gets the best (None: no policy)
    policies: tuple | None = None


SMALL = {"type": "small_cnn", "width": 16, "pool": {"op": "max", "kernel": 2}}
#: The built-in models' backbone (issue 11): one more stage than SMALL, so that the receptive
#: field covers an object as large as the policy's shorter side.
SMALL4 = {**SMALL, "stages": 4}
SPP_HEAD = {"type": "spp", "levels": list(DEFAULT_LEVELS), "mode": "max"}
#: Object scale in training, the same as the size buckets': digits 0.2..1.0 of the shorter side;
#: layout: each shape 0.1..0.5 of it.
OBJECT_SCALE = {"digits": {"scale_range": (0.2, 1.0)}, "layout": {"side_range": (0.1, 0.5)}}
#: The multi-size recipe: canvases with the shorter side in 32..48, aspect up to 4:1, 30% of the
#: batches drawn smaller (shorter side 16..S) and 30% larger (up to 4 S), resized to S by the
#: policy's resampling.
MULTISIZE = {"shorter_side": [32, 48], "max_aspect": 4.0, "upscaled": 0.3, "source_min": 16,
             "downscaled": 0.3, "source_max_factor": 4.0}
#: Size policies tried on validation buckets (within the training range).
POLICIES = tuple({"shorter_side": p} for p in ([32, 32], [36, 36], [40, 40], [44, 44], [48, 48], [32, 48]))
STEPS = 1200
LR = 6e-3


def _recipes() -> dict[str, Recipe]:
    def classifier(head, n, resize=None):
        return {"backbone": SMALL4, "head": head, "num_classes": n, "resize": resize}

    def recipe(*args, **kw):
        return Recipe(*args, steps=STEPS, lr=LR, multisize=MULTISIZE, policies=POLICIES, **kw)

    fixed_head = {"type": "fixed", "feature_size": [4, 4]}
    r = [  # every built-in model: the multi-size recipe
        recipe("digits-spp", "digits", classifier(SPP_HEAD, 10),
               description="Handwritten digits at any size and position: small CNN + SPP head (levels 1, 2, 4)."),
        recipe("digits-gap", "digits", classifier({"type": "gap"}, 10),
               description="Baseline for digits-spp: the same backbone with global average pooling."),
        recipe("digits-fixed", "digits", classifier(fixed_head, 10, resize=[32, 32]),
               description="Baseline for digits-spp: every image resized to 32x32, flattened features, linear layer."),
        recipe("layout-spp", "layout", classifier(SPP_HEAD, 4),
               description="Where is the square relative to the cross? Small CNN + SPP head (levels 1, 2, 4)."),
        recipe("layout-gap", "layout", classifier({"type": "gap"}, 4),
               description="Baseline for layout-spp: global average pooling cannot see where things are."),
    ]
    return {x.name: x for x in r}


RECIPES = _recipes()
BUILTIN = [*RECIPES, "effnet-lite0-imagenet"]


def _data(dataset: str, recipe: Recipe):
    """(training batches, {eval name: (batches, description)})"""
    from poolops_models import multisize
    from poolops_models.data import get_dataset

    ds = get_dataset(dataset)
    size = recipe.fixed_size
    kw = OBJECT_SCALE[dataset] if recipe.multisize else {}
    if dataset == "digits":
        parts = ds.splits(seed=0)  # models train on "train" only (validation: choices; test: reports)
        train_ids, test_ids = parts["train"], parts["test"]
        if recipe.multisize and size is None:
            def draw(rng, n, hw):
                return ds.render(rng.choice(train_ids, n), hw, rng, **kw)

            train = multisize.batches(draw, recipe.steps, recipe.batch_size, seed=recipe.seed, **recipe.multisize)
        else:
            train = ds.batches(train_ids, recipe.steps, recipe.batch_size, seed=recipe.seed, fixed_size=size, **kw)
        evals = {
            "seen": (ds.eval_set(test_ids, ds.SEEN_SIZES), f"{len(test_ids)} held-out digits x 4 sizes in {ds.SEEN_SIZES}"),
            "unseen": (ds.eval_set(test_ids, ds.UNSEEN_SIZES), f"{len(test_ids)} held-out digits x 4 sizes in {ds.UNSEEN_SIZES}"),
        }
    else:
        if recipe.multisize and size is None:
            def draw(rng, n, hw):
                return ds.render(n, hw, rng, **kw)

            train = multisize.batches(draw, recipe.steps, recipe.batch_size, seed=recipe.seed, **recipe.multisize)
        else:
            train = ds.batches(recipe.steps, recipe.batch_size, seed=recipe.seed, fixed_size=size, **kw)
        evals = {
            "seen": (ds.eval_set(ds.SEEN_SIZES), f"2048 held-out images, 4 sizes in {ds.SEEN_SIZES}"),
            "unseen": (ds.eval_set(ds.UNSEEN_SIZES), f"2048 held-out images, 4 sizes in {ds.UNSEEN_SIZES}"),
        }
    return ds, train, evals


#: The size limits on the built-in models' cards: what `poolops experiments` measures (canvases
#: 16..512 px a side, aspect up to 4:1), never wider (issue 11).
MIN_SIZE, MAX_SIZE = (16, 16), (512, 512)


_VALIDATION_INPUTS: dict = {}


def _validation_inputs(dataset: str, policies, limits):
    """Per validation bucket ``[(x under each policy, y)]``, computed once per process (rendering
    the 256-512 px buckets and resizing them is most of a policy selection's time)."""
    from poolops_models.experiments import policy_batches, validation_buckets

    key = (dataset, json.dumps(list(policies), sort_keys=True), json.dumps(limits))
    if key not in _VALIDATION_INPUTS:
        _VALIDATION_INPUTS[key] = [
            [([next(policy_batches([(x, y)], p, limits))[0] for p in policies], y) for x, y in s]
            for s in validation_buckets(dataset)
        ]
    return _VALIDATION_INPUTS[key]


#: How each dataset's data is split (issue 11), as the cards record it.
DATA_SPLIT = {
    "digits": "scikit-learn's 1797 digit samples split by sample, stratified (models/data/digits.py splits(seed=0)): "
              "train 1078 (trained on), validation 269 (only for choices: the size policy, recipe variants in "
              "python -m poolops_models.tuning), test 450 (the metrics accuracy_seen/unseen_sizes and the test "
              "buckets of poolops experiments; never used for a choice)",
    "layout": "generated: training batches from the generator's training stream (seed 0); validation buckets from "
              "its evaluation stream at seeds 2000-2004 (only for choices); test: its evaluation stream at seed 0 "
              "(accuracy_seen/unseen_sizes) and seeds 1000-1004 (the test buckets of poolops experiments)",
}


def select_policy(model, dataset: str, policies, limits=(MIN_SIZE, MAX_SIZE)):
    """``(best policy, {policy: [accuracy per size bucket]})``: each policy of ``policies`` on the
    *validation* size buckets (``experiments.validation_buckets``: digits from the validation
    samples, which no model trains on; layout: seeds apart from the test buckets'), the best worst
    bucket wins (then the best mean; the first of equals). The test buckets are never used here."""
    import numpy as np

    from poolops_models import size_policy
    from poolops_models.experiments import choose, torch_predictor

    predict = torch_predictor(model)
    per_bucket = []
    for batches in _validation_inputs(dataset, policies, limits):
        correct = np.zeros(len(policies))
        for xs, y in batches:
            correct += [int((predict(x) == y).sum()) for x in xs]
        per_bucket.append(correct / sum(len(y) for _, y in batches))
    tried = [(p, [float(a[k]) for a in per_bucket]) for k, p in enumerate(policies)]
    best = choose(tried)
    return best[0], {size_policy.describe(p): [round(a, 4) for a in accs] for p, accs in tried}


def train_recipe(recipe: Recipe, progress: bool = True):
    """Train a recipe; returns ``(model, dataset module, metrics, history, selection)``.

    With ``recipe.policies`` the size policy is chosen on validation buckets (:func:`select_policy`)
    and ``selection = {"policy": ..., "validation": {policy: [accuracy per bucket]}}``, and the
    metrics are measured with it (as the server feeds the model); otherwise ``selection`` is None."""
    import torch

    from poolops_models.classifier import build_model
    from poolops_models.experiments import BUCKETS, policy_batches
    from poolops_models.train import accuracy, fit

    torch.manual_seed(recipe.seed)
    model = build_model(recipe.config)
    ds, train, evals = _data(recipe.dataset, recipe)
    hist = fit(model, train, recipe.steps, lr=recipe.lr, seed=recipe.seed, progress=progress)
    selection, policy, note = None, None, ""
    if recipe.policies:
        from poolops_models import size_policy

        policy, tried = select_policy(model, recipe.dataset, recipe.policies)
        selection = {"policy": policy, "validation": tried}
        note = f"; size policy: {size_policy.describe(policy)}"
    limits = (MIN_SIZE, MAX_SIZE)
    metrics = [
        {"name": f"accuracy_{k}_sizes", "value": round(accuracy(model, policy_batches(batches, policy, limits)), 4),
         "data": desc + note}
        for k, (batches, desc) in evals.items()
    ]
    if selection:
        from poolops_models import size_policy

        from poolops_models.experiments import BUCKET_N_PER_SIZE, BUCKET_N_SIZES

        accs = selection["validation"][size_policy.describe(policy)]
        n_val = BUCKET_N_SIZES * BUCKET_N_PER_SIZE
        metrics += [
            {"name": f"accuracy_validation_shorter_side_{lo}-{hi}", "value": a,
             "data": f"validation size bucket (`poolops experiments`' generator, seeds apart from the test "
                     f"buckets; digits: the validation samples, never trained on): {n_val} canvases with the "
                     f"shorter side {lo}..{hi} px, aspect up to 4:1{note}"}
            for (lo, hi), a in zip(BUCKETS, accs)
        ]
    return model, ds, metrics, hist, selection


def build(name: str, root: Path | None = None, progress: bool = True):
    """Build one built-in model into the registry; returns the registry entry."""
    if name == "effnet-lite0-imagenet":
        from poolops_models.effnet import build_effnet

        return build_effnet(root or zoo_dir())
    if name not in RECIPES:
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(BUILTIN)}")
    import torch

    from poolops_models.export import export_classifier, max_parity_error
    from poolops_models.cards import save_model

    torch.set_num_threads(os.cpu_count() or 1)
    recipe = RECIPES[name]
    t0 = time.time()
    model, ds, metrics, hist, selection = train_recipe(recipe, progress)
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
        "input": {"name": "x", "channels": ds.CHANNELS, "min_size": list(MIN_SIZE), "max_size": list(MAX_SIZE)},
        "padding_invariant": invariant,
        "size_policy": selection["policy"] if selection else None,
        "metrics": metrics,
        "produced_by": f"poolops export {name}",
        "extra": {
            "training": {
                "steps": recipe.steps, "batch_size": recipe.batch_size, "lr": recipe.lr, "seed": recipe.seed,
                "sizes": "fixed " + str(recipe.fixed_size) if recipe.fixed_size
                else f"multi-size, models/multisize.py: {recipe.multisize}" if recipe.multisize
                else f"random per batch in {ds.SEEN_SIZES}",
                "object_scale": OBJECT_SCALE[recipe.dataset] if recipe.multisize else "the dataset's default",
                "seconds": round(train_s, 1), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "final_loss": round(sum(hist.loss[-20:]) / min(20, len(hist.loss)), 4),
            },
            "onnx_vs_torch_max_rel_error": parity,
            "data_split": DATA_SPLIT[recipe.dataset],
            **({"size_policy_selection": selection["validation"]} if selection else {}),
        },
    }
    return save_model(root or zoo_dir(), proto, card)


def missing_builtins(root: Path | None = None, names: list[str] | None = None) -> list[str]:
    """The named built-in models (default: all) that are missing or broken in the registry."""
    from poolops_models.cards import load_registry

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
