"""``poolops experiments``: the ablation tables of the README, measured on held-out data.

Table 1 (heads, like the SPP paper's ablations): accuracy of the fixed-resize, GAP and
SPP heads at the training size range and at larger unseen sizes, and SPP trained at
one size vs at many. Table 2 (the seeds' claims about downsampling): the digits
backbone with max, average, stochastic and mixed pooling layers (SPP head): training
and test accuracy and their gap. Built-in models are read from the registry (run
through ONNX Runtime); the other rows are trained here with the same recipe and seeds.

Size policy: a registry model run here is fed what the server feeds it, each image resized
by its card's ``size_policy`` through ``models/size_policy.py`` (:func:`policy_batches`;
``resize=False`` measures the raw behaviour, as the API's ``resize=none``).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np

from models.zoo import RECIPES, SMALL, Recipe, ensure_built, train_recipe, zoo_dir

SINGLE_SIZE = (44, 44)  # the middle of the 24..64 training range


def _variant(base: str, name: str, **changes) -> Recipe:
    r = RECIPES[base]
    config = copy.deepcopy(r.config)
    if "pool" in changes:
        config["backbone"] = {**SMALL, "pool": changes.pop("pool")}
    return dataclasses.replace(r, name=name, config=config, **changes)


VARIANTS = {
    "digits-spp (one size)": _variant("digits-spp", "digits-spp-single", fixed_size=SINGLE_SIZE),
    "layout-spp (one size)": _variant("layout-spp", "layout-spp-single", fixed_size=SINGLE_SIZE),
    "avg": _variant("digits-spp", "digits-spp-avgpool", pool={"op": "avg", "kernel": 2}),
    "stochastic": _variant("digits-spp", "digits-spp-stochastic", pool={"op": "stochastic", "kernel": 2}),
    "mixed": _variant("digits-spp", "digits-spp-mixed", pool={"op": "mixed", "kernel": 2, "alpha": 0.5}),
}


def policy_batches(batches, policy, card_limits=None):
    """Each batch ``(x [N, C, H, W], y)`` with every image resized by ``policy`` through
    ``models/size_policy.apply`` (the server's and the UI's path); unchanged without a policy.
    Images of one batch share a size, so their resized images do too."""
    from models import size_policy

    for x, y in batches:
        if size_policy.shorter_side(policy) is None:
            yield x, y
            continue
        out = [size_policy.apply(np.ascontiguousarray(im.transpose(1, 2, 0)), policy, card_limits) for im in x]
        yield np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.float32), y


def registry_accuracy(entry, batches, resize: bool = True) -> float:
    """Accuracy of a registry model (ONNX Runtime) on ``batches``, each image resized by its
    card's size policy unless ``resize`` is off."""
    policy = entry.card.size_policy if resize else None
    return _onnx_accuracy(entry.onnx_path, policy_batches(batches, policy, entry.card))


def _onnx_accuracy(path: Path, batches) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with_valid = "valid" in [i.name for i in sess.get_inputs()]
    correct = total = 0
    for x, y in batches:
        feeds = {"x": x}
        if with_valid:  # a dense batch: every image is valid everywhere
            feeds["valid"] = np.array([x.shape[2:]] * len(x), np.int64)
        correct += int((sess.run(["logits"], feeds)[0].argmax(1) == y).sum())
        total += len(y)
    return correct / total


def _digits_train_eval():
    from models.data import digits

    train_ids, _ = digits.split(seed=0)
    return digits.eval_set(train_ids, digits.SEEN_SIZES, n_sizes=2, seed=1)


def run(progress: bool = True, resize: bool = True) -> str:
    """Train what is needed, measure, and return the Markdown of both tables (registry models
    run with their card's size policy unless ``resize`` is off)."""
    from models.registry import load_registry
    from models.train import accuracy

    ensure_built(list(RECIPES), progress=progress)  # a fresh clone builds what is missing
    reg = load_registry(zoo_dir())

    def card_metrics(name):
        return {m.name: m.value for m in reg[name].card.metrics}

    t0 = time.time()
    trained = {}
    for label, recipe in VARIANTS.items():
        model, _, metrics, _ = train_recipe(recipe, progress)
        trained[label] = (model, {m["name"]: m["value"] for m in metrics})

    heads = [
        ("digits", "fixed (resize to 32x32 + FC)", card_metrics("digits-fixed")),
        ("digits", "GAP", card_metrics("digits-gap")),
        (
            "digits",
            f"SPP (1, 2, 4), trained at one size {SINGLE_SIZE}",
            trained["digits-spp (one size)"][1],
        ),
        ("digits", "SPP (1, 2, 4), trained at many sizes", card_metrics("digits-spp")),
        ("layout", "GAP", card_metrics("layout-gap")),
        ("layout", f"SPP (1, 2, 4), trained at one size {SINGLE_SIZE}", trained["layout-spp (one size)"][1]),
        ("layout", "SPP (1, 2, 4), trained at many sizes", card_metrics("layout-spp")),
    ]
    lines = [
        "# poolops experiments",
        "",
        "Made by `poolops experiments > docs/experiments.md` (fixed seeds; "
        f"{time.time() - t0:.0f} s of training for the rows not in the registry).",
        "",
        "## Heads (held-out data)",
        "",
        "Training sizes: random per batch in 24..64 x 24..64 (unless 'one size'); "
        "unseen sizes: 80..128 x 80..128. Digits: 450 held-out digit samples at 4 sizes each; "
        "layout: 2048 held-out generated images at 4 sizes.",
        "",
        "| task | head | accuracy, training sizes | accuracy, larger unseen sizes |",
        "|---|---|---:|---:|",
    ]
    for task, head, m in heads:
        lines.append(f"| {task} | {head} | {m['accuracy_seen_sizes']:.3f} | {m['accuracy_unseen_sizes']:.3f} |")

    train_eval = _digits_train_eval()
    pooling = [("max", registry_accuracy(reg["digits-spp"], train_eval, resize), card_metrics("digits-spp"))]
    for label in ("avg", "stochastic", "mixed"):
        model, m = trained[label]
        pooling.append((label, accuracy(model, train_eval), m))
    lines += [
        "",
        "## Downsampling layers (digits, SPP head, held-out digits at training sizes)",
        "",
        "The same backbone with each pooling op (2x2, stride 2) as its two downsampling layers. "
        "Training accuracy: training digits at 2 sizes of the training range, new placements; "
        "stochastic pooling samples while training and uses its expectation at test time; "
        "mixed: 0.5 max + 0.5 average.",
        "",
        "| downsampling | training accuracy | test accuracy | gap | test, larger unseen sizes |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, train_acc, m in pooling:
        test = m["accuracy_seen_sizes"]
        lines.append(
            f"| {label} | {train_acc:.3f} | {test:.3f} | {train_acc - test:+.3f} | {m['accuracy_unseen_sizes']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(progress: bool = True) -> int:
    print(run(progress), end="")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
