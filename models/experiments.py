"""``poolops experiments``: the ablation tables of docs/models.md, measured on held-out data.

Table 1 (heads, like the SPP paper's ablations): accuracy of the fixed-resize, GAP and
SPP heads at the training size range and at larger unseen sizes, and SPP trained at
one size vs at many. Table 2 (the seeds' claims about downsampling): the digits
backbone with max, average, stochastic and mixed pooling layers (SPP head): training
and test accuracy and their gap. Built-in models are read from the registry (run
through ONNX Runtime); the other rows are trained here with the same recipe and seeds.

Table 3 (issue 11): accuracy per size bucket (canvases 16..512 px, aspect up to 4:1) of every
registry head with no size policy, its card's, a candidate and one chosen on validation data,
and a PNG plot of it (:func:`buckets_section`; ``poolops experiments --buckets-only --splice
docs/experiments.md`` regenerates just that section, without training).

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

from poolops_models.recipes import POLICIES, RECIPES, Recipe, ensure_built, train_recipe, zoo_dir

SINGLE_SIZE = (44, 44)  # the middle of the 24..64 training range


def _variant(base: str, name: str, **changes) -> Recipe:
    r = RECIPES[base]
    config = copy.deepcopy(r.config)
    if "pool" in changes:
        config["backbone"] = {**config["backbone"], "pool": changes.pop("pool")}
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
    from poolops_models import size_policy

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
    from poolops_models.data import digits

    return digits.eval_set(digits.splits()["train"], digits.SEEN_SIZES, n_sizes=2, seed=1)


def run(progress: bool = True, resize: bool = True) -> str:
    """Train what is needed, measure, and return the Markdown of both tables (registry models
    run with their card's size policy unless ``resize`` is off)."""
    from poolops_models.cards import load_registry
    from poolops_models.train import accuracy

    ensure_built(list(RECIPES), progress=progress)  # a fresh clone builds what is missing
    reg = load_registry(zoo_dir())

    def card_metrics(name):
        return {m.name: m.value for m in reg[name].card.metrics}

    t0 = time.time()
    trained = {}
    for label, recipe in VARIANTS.items():
        model, _, metrics, _, selection = train_recipe(recipe, progress)
        trained[label] = (model, {m["name"]: m["value"] for m in metrics}, selection and selection["policy"])

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
        "Training: the multi-size recipe of models/recipes.py (shorter side 32..48, aspect up to 4:1, objects "
        "0.2..1.0 of the shorter side, batches also drawn smaller or larger and resized), or every batch at "
        f"{SINGLE_SIZE} ('one size'); each model fed through the size policy chosen on its validation "
        "buckets (the registry models: their card's). Evaluated at canvases of 24..64 x 24..64 and "
        "80..128 x 80..128 (the datasets' default object scale). Digits: 450 held-out digit samples at 4 "
        "sizes each; layout: 2048 held-out generated images at 4 sizes.",
        "",
        "| task | head | accuracy, 24..64 px | accuracy, 80..128 px |",
        "|---|---|---:|---:|",
    ]
    for task, head, m in heads:
        lines.append(f"| {task} | {head} | {m['accuracy_seen_sizes']:.3f} | {m['accuracy_unseen_sizes']:.3f} |")

    train_eval = _digits_train_eval()
    pooling = [("max", registry_accuracy(reg["digits-spp"], train_eval, resize), card_metrics("digits-spp"))]
    limits = (reg["digits-spp"].card.input.min_size, reg["digits-spp"].card.input.max_size)
    for label in ("avg", "stochastic", "mixed"):
        model, m, policy = trained[label]
        pooling.append((label, accuracy(model, policy_batches(train_eval, policy if resize else None, limits)), m))
    lines += [
        "",
        "## Downsampling layers (digits, SPP head, held-out digits at 24..64 px)",
        "",
        "The same backbone with each pooling op (2x2, stride 2) as its three downsampling layers, the "
        "multi-size recipe, each fed through its size policy. Training accuracy: training digits at 2 sizes "
        "in 24..64, new placements; "
        "stochastic pooling samples while training and uses its expectation at test time; "
        "mixed: 0.5 max + 0.5 average.",
        "",
        "| downsampling | training accuracy | test accuracy | gap | test, 80..128 px |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, train_acc, m in pooling:
        test = m["accuracy_seen_sizes"]
        lines.append(
            f"| {label} | {train_acc:.3f} | {test:.3f} | {train_acc - test:+.3f} | {m['accuracy_unseen_sizes']:.3f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- accuracy by size
#: Size buckets by the canvas's *shorter* side, inclusive.
BUCKETS = ((16, 31), (32, 63), (64, 127), (128, 255), (256, 512))
MAX_SIDE = 512  # every canvas side in 16..512
MAX_ASPECT = 4.0  # aspect 1:4 .. 4:1
BUCKET_N_SIZES = 100  # canvas sizes per bucket (one batch each)
BUCKET_N_PER_SIZE = 10  # images per canvas size: 1000 per bucket per task
BUCKET_SEED = 1000  # bucket i uses seed BUCKET_SEED + i (sizes and placements)
DIGIT_SCALE = (0.2, 1.0)  # the digit's height, a fraction of the shorter side
LAYOUT_SIDE = (0.1, 0.5)  # each shape's side (clipped so that both fit side by side): the pair spans ~0.2..1.0
#: The candidate policy measured beside each card's own: the shorter side into the training range
#: of the multi-size recipe (models/recipes.py MULTISIZE).
CANDIDATE_POLICY = {"shorter_side": [32, 48]}
#: Policies tried on *validation* data (digits: training digit samples; layout: other seeds) to
#: pick one per task (best worst-bucket accuracy of the task's SPP model); never on the test buckets.
SELECTION_POLICIES = POLICIES  # the same candidates as the model build's (models/recipes.py select_policy)
SELECTION_SEED = 2000  # validation bucket i uses seed SELECTION_SEED + i
BUCKET_MODELS = {"digits": ("digits-spp", "digits-gap", "digits-fixed"), "layout": ("layout-spp", "layout-gap")}
BUCKETS_HEADING = "## Accuracy by image size"
PLOT = Path("docs") / "accuracy_by_size.png"


class BucketSet:
    """A size bucket's batches, rendered again on every pass (a 256-512 px bucket of 1000 images
    would take about 1 GB held at once); iterate it as often as needed."""

    def __init__(self, make):
        self._make = make

    def __iter__(self):
        return iter(self._make())


#: Which data each part of the evaluation draws on (issue 11: choices on validation only).
#: Digits: the samples of ``digits.splits()``; layout: the generator's evaluation stream at these
#: seeds (its training stream is apart for every seed).
PARTS = ("test", "validation")


def bucket_set(task: str, bucket: tuple[int, int], seed: int = BUCKET_SEED,
               n_sizes: int = BUCKET_N_SIZES, n_per_size: int = BUCKET_N_PER_SIZE, part: str = "test") -> BucketSet:
    """The batches of one size bucket: ``n_sizes`` canvases (:func:`digits.bucket_sizes`: shorter
    side in ``bucket``, aspect up to 4:1, sides up to 512) with ``n_per_size`` images each, one
    batch per canvas. Digits: the ``part`` samples of ``digits.splits()`` (``test``: held out,
    never used for a choice; ``validation``: for choosing), the digit 0.2..1.0 of the shorter
    side, any position; layout: the generator's shapes, each 0.1..0.5 of the shorter side, any
    position (its ``part`` is the seed: :data:`BUCKET_SEED` + i test, :data:`SELECTION_SEED` + i
    validation)."""
    from poolops_models.data import digits, layout

    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    sizes = digits.bucket_sizes(bucket, n_sizes, seed=seed, max_aspect=MAX_ASPECT, max_side=MAX_SIDE)
    if task == "digits":
        ids = digits.splits()[part]
        return BucketSet(lambda: digits.eval_batches(ids, sizes=sizes, n_per_size=n_per_size, seed=seed,
                                                     scale_range=DIGIT_SCALE))
    if task == "layout":
        return BucketSet(lambda: layout.eval_batches(sizes=sizes, n_per_size=n_per_size, seed=seed,
                                                     side_range=LAYOUT_SIDE))
    raise ValueError(f"unknown task {task!r}: digits or layout")


def policy_accuracies(predict, batches, policies, card_limits=None) -> list[float]:
    """Accuracy of ``predict(x [N, C, H, W]) -> labels [N]`` on ``batches`` under each of
    ``policies`` (None: the images as they are), resized through ``models/size_policy.apply``
    within ``card_limits``; one pass, each batch rendered once."""
    return [float(m.mean()) if len(m) else 0.0 for m in policy_correct(predict, batches, policies, card_limits)]


def policy_correct(predict, batches, policies, card_limits=None) -> list[np.ndarray]:
    """Per policy, whether each image of ``batches`` was classified right (``bool[n]``, in batch
    order): what :func:`policy_accuracies` averages, kept for paired comparisons."""
    correct = [[] for _ in policies]
    for x, y in batches:
        for k, p in enumerate(policies):
            (xp, _), = policy_batches([(x, y)], p, card_limits)
            correct[k].append(np.asarray(predict(xp)) == np.asarray(y))
    return [np.concatenate(c) if c else np.zeros(0, bool) for c in correct]


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value that two classifiers right/wrong on the same images
    (``bool[n]`` each) are equally accurate: a binomial test on the images where they disagree."""
    from math import comb

    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    n = n01 + n10
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(n01, n10) + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


def onnx_predictor(path: Path):
    """``predict(x [N, C, H, W]) -> labels [N]`` of an ONNX model in ONNX Runtime (a dense batch)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with_valid = "valid" in [i.name for i in sess.get_inputs()]

    def predict(x):
        feeds = {"x": x}
        if with_valid:  # a dense batch: every image is valid everywhere
            feeds["valid"] = np.array([x.shape[2:]] * len(x), np.int64)
        return sess.run(["logits"], feeds)[0].argmax(1)

    return predict


def torch_predictor(model):
    """``predict(x [N, C, H, W]) -> labels [N]`` of a torch classifier in eval mode."""
    import torch

    def predict(x):
        model.eval()
        with torch.inference_mode():
            return model(torch.as_tensor(x)).argmax(1).numpy()

    return predict


def policy_accuracy(entry, batches, policy) -> float:
    """Accuracy of a registry model (ONNX Runtime) on ``batches``, each image resized by ``policy``
    (None: as they are) within the card's size limits, through ``models/size_policy.apply``."""
    return policy_accuracies(onnx_predictor(entry.onnx_path), batches, [policy], entry.card)[0]


def choose(tried):
    """The best of ``[(policy, [accuracy per bucket])]``: the best worst bucket, then the best mean;
    the first of equals."""
    return max(tried, key=lambda t: (min(t[1]), float(np.mean(t[1]))))


def validation_buckets(task: str, buckets=BUCKETS, n_sizes: int = BUCKET_N_SIZES,
                       n_per_size: int = BUCKET_N_PER_SIZE) -> list[BucketSet]:
    """The validation buckets of a task (seeds :data:`SELECTION_SEED` + i; digits: the validation samples)."""
    return [bucket_set(task, b, SELECTION_SEED + i, n_sizes, n_per_size, part="validation") for i, b in enumerate(buckets)]


def select_policy(task: str, reg, buckets=BUCKETS, n_sizes: int = BUCKET_N_SIZES,
                  n_per_size: int = BUCKET_N_PER_SIZE):
    """The policy of :data:`SELECTION_POLICIES` with the best worst-bucket accuracy of the task's
    SPP model on validation buckets (:func:`validation_buckets`), and ``[(policy, [accuracy per
    bucket])]`` of every one tried."""
    entry = reg[BUCKET_MODELS[task][0]]
    predict = onnx_predictor(entry.onnx_path)
    per_bucket = [policy_accuracies(predict, s, SELECTION_POLICIES, entry.card)
                  for s in validation_buckets(task, buckets, n_sizes, n_per_size)]
    tried = [(p, [acc[k] for acc in per_bucket]) for k, p in enumerate(SELECTION_POLICIES)]
    return choose(tried)[0], tried


def _policies(card_policy, selected=None):
    """(label, policy) rows: none, the card's own (if any), the candidate, the one selected on
    validation data (if any); each policy once."""
    from poolops_models import size_policy

    rows, seen = [], set()
    for policy, tag in ((None, "resize=none"), (card_policy, "card"), (CANDIDATE_POLICY, "candidate"),
                        (selected, "selected on validation")):
        if tag in ("card", "selected on validation") and size_policy.shorter_side(policy) is None:
            continue
        if tag == "card" and size_policy.shorter_side(card_policy) is None:
            continue
        key = size_policy.describe(policy)
        if key in seen:
            rows = [(f"{lab}, {tag}" if size_policy.describe(p) == key else lab, p) for lab, p in rows]
            continue
        seen.add(key)
        rows.append((f"{key}" + ("" if policy is None else f" ({tag})"), policy))
    return rows


def bucket_results(reg=None, buckets=BUCKETS, seed: int = BUCKET_SEED,
                   n_sizes: int = BUCKET_N_SIZES, n_per_size: int = BUCKET_N_PER_SIZE, resize: str = "card"):
    """``([(task, model, policy label, [accuracy per bucket])], {task: (selected, tried)}, correct)``
    for every registry model of :data:`BUCKET_MODELS`, without a policy, with its card's, with
    :data:`CANDIDATE_POLICY` and with the task's policy chosen by :func:`select_policy`;
    ``correct[(task, model, label)]``: per bucket, ``bool[n]`` right or wrong per image (the same
    images for every model of a task, so that models can be compared pair by pair)."""
    from poolops_models.cards import load_registry

    reg = reg if reg is not None else load_registry(zoo_dir())
    out, selection, correct = [], {}, {}
    for task, names in BUCKET_MODELS.items():
        selection[task] = select_policy(task, reg, buckets, n_sizes, n_per_size)
        sets = [bucket_set(task, b, seed + i, n_sizes, n_per_size) for i, b in enumerate(buckets)]
        for name in names:
            rows = [(label, policy) for label, policy in _policies(reg[name].card.size_policy, selection[task][0])
                    if resize != "none" or policy is None]
            predict = onnx_predictor(reg[name].onnx_path)
            per_bucket = [policy_correct(predict, s, [p for _, p in rows], reg[name].card) for s in sets]
            for k, (label, _) in enumerate(rows):
                correct[(task, name, label)] = [m[k] for m in per_bucket]
                out.append((task, name, label, [float(m[k].mean()) for m in per_bucket]))
    return out, selection, correct


def buckets_markdown(results, selection, buckets=BUCKETS, n_sizes: int = BUCKET_N_SIZES,
                     n_per_size: int = BUCKET_N_PER_SIZE, plot: str | Path = PLOT, correct=None) -> str:
    cols = [f"{lo}-{hi}" for lo, hi in buckets]
    lines = [
        BUCKETS_HEADING,
        "",
        "Made by `poolops experiments` (last section), or alone by `poolops experiments --buckets-only "
        "--splice docs/experiments.md`, which replaces this section (from its heading to the end of the "
        f"file) and redraws [{Path(plot).name}]({Path(plot).name}); no training, registry models through "
        "ONNX Runtime.",
        "",
        f"Buckets by the canvas's **shorter side** (px); canvases {BUCKETS[0][0]}..{MAX_SIDE} px per side, "
        f"aspect 1:{MAX_ASPECT:g} to {MAX_ASPECT:g}:1 (log-uniform, capped so the longer side is at most "
        f"{MAX_SIDE}), landscape or portrait; {n_sizes} canvas sizes x {n_per_size} images = "
        f"{n_sizes * n_per_size} images per bucket per task (seed {BUCKET_SEED} + bucket index). "
        f"Digits: the *test* digit samples of `digits.splits()` (never trained on, never used for a choice), the digit {DIGIT_SCALE[0]}..{DIGIT_SCALE[1]} "
        f"of the shorter side, any position; layout: two shapes, each {LAYOUT_SIDE[0]}..{LAYOUT_SIDE[1]} of the "
        "shorter side (clipped so both fit side by side: the pair spans about 0.2..1.0), any position. "
        "Size policy: `none` feeds the canvas as it is (the API's `resize=none`); `shorter side into "
        f"[{CANDIDATE_POLICY['shorter_side'][0]}, {CANDIDATE_POLICY['shorter_side'][1]}]` (candidate: the "
        "training range) resizes it with `models/size_policy.apply` (bilinear, aspect kept, no crop), as "
        "the server does for a card that declares it; a `card` row is the card's own policy. The layout task "
        "has no fixed-resize model in the registry. `selected on validation`: per task, the policy of "
        + ", ".join(f"[{p['shorter_side'][0]}, {p['shorter_side'][1]}]" for p in SELECTION_POLICIES)
        + " with the best worst-bucket accuracy of the task's SPP model on validation buckets (same "
        f"generator and sizes, seeds {SELECTION_SEED} + bucket index; digits: the *validation* digit samples, "
        "which no model trains on), never on the test buckets below. Each card's own policy was chosen the "
        "same way by its build (`poolops export`), on its own model. With "
        f"{n_sizes * n_per_size} images a bucket, an accuracy's 95% interval (Wilson) is about "
        f"{_ci_text(0.97, n_sizes * n_per_size)} at 0.97 and {_ci_text(0.99, n_sizes * n_per_size)} at 0.99.",
        "",
        "| task | model | size policy | " + " | ".join(cols) + " | worst | best - worst |",
        "|---|---|---|" + "---:|" * (len(cols) + 2),
    ]
    for task, name, label, accs in results:
        lines.append(f"| {task} | {name} | {label} | " + " | ".join(f"{a:.3f}" for a in accs)
                     + f" | {min(accs):.3f} | {max(accs) - min(accs):.3f} |")
    lines += ["", *targets_markdown(results, n_sizes * n_per_size, cols, correct)]
    lines += ["", "Policy selection (validation buckets, the task's SPP model, accuracy per bucket):", "",
              "| task | model | size policy | " + " | ".join(cols) + " | worst |",
              "|---|---|---|" + "---:|" * (len(cols) + 1)]
    from poolops_models import size_policy

    for task, (best, tried) in selection.items():
        for p, accs in tried:
            mark = " (selected)" if p == best else ""
            lines.append(f"| {task} | {BUCKET_MODELS[task][0]} | {size_policy.describe(p)}{mark} | "
                         + " | ".join(f"{a:.3f}" for a in accs) + f" | {min(accs):.3f} |")
    lines += ["", f"![accuracy by image size]({Path(plot).name})", ""]
    return "\n".join(lines)


def wilson(acc: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a binomial proportion ``acc`` of ``n``."""
    if n <= 0:
        return 0.0, 1.0
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _ci_text(acc: float, n: int) -> str:
    lo, hi = wilson(acc, n)
    return f"[{lo:.3f}, {hi:.3f}]"


#: Issue 11's targets for the SPP models under their card's policy, on the test buckets.
TARGET_WORST, TARGET_SPREAD = 0.97, 0.02


#: Below this paired p-value (:func:`mcnemar_p`) a bucket's difference between two models is
#: called significant.
SIGNIFICANCE = 0.05


def targets_markdown(results, n: int, cols, correct=None) -> list[str]:
    """Lines of the targets table: each task's SPP model under its card's policy against
    :data:`TARGET_WORST`, :data:`TARGET_SPREAD` and the GAP and fixed-resize models under theirs.
    With ``correct`` (see :func:`bucket_results`), each difference also gets its paired
    McNemar p-value, and a last column says whether SPP is significantly below a baseline anywhere."""
    card = {(t, m): (label, a) for t, m, label, a in results if "(card" in label}
    lines = [f"Issue 11's targets on these test buckets ({n} images each; each model under its card's policy; "
             "a difference is SPP minus the baseline, per bucket, its worst shown"
             + (f"; p: exact McNemar test on the same images, paired, two-sided; significant below {SIGNIFICANCE}"
                if correct else "") + "):", "",
             "| task | model | worst bucket [95% interval] | best - worst | SPP - GAP, worst bucket | "
             "SPP - fixed, worst bucket | at least 0.97 everywhere | spread within 0.02 | >= GAP and fixed everywhere |"
             + (" significantly below a baseline in a bucket |" if correct else ""),
             "|---|---|---|---:|---:|---:|---|---|---|" + ("---|" if correct else "")]
    for task, names in BUCKET_MODELS.items():
        if (task, names[0]) not in card:
            continue
        spp_label, spp = card[(task, names[0])]
        k = int(np.argmin(spp))
        diffs, below = {}, []
        for base in names[1:]:
            if (task, base) not in card:
                continue
            label, other = card[(task, base)]
            d = [a - b for a, b in zip(spp, other)]
            j = int(np.argmin(d))
            p = None
            if correct:
                ps = [mcnemar_p(x, y) for x, y in zip(correct[(task, names[0], spp_label)], correct[(task, base, label)])]
                p = ps[j]
                below += [f"{base.split('-')[-1]} at {cols[i]} (p {ps[i]:.3f})" for i in range(len(d))
                          if d[i] < 0 and ps[i] < SIGNIFICANCE]
            diffs[base.split("-")[-1]] = (d[j], cols[j], p)
        fmt = {h: (f"{v[0]:+.3f} ({v[1]}" + (f", p {v[2]:.3f})" if v[2] is not None else ")")) if v else "-"
               for h, v in (("gap", diffs.get("gap")), ("fixed", diffs.get("fixed")))}
        beats = all(v[0] >= 0 for v in diffs.values())
        lines.append(
            f"| {task} | {names[0]} | {spp[k]:.3f} ({cols[k]}) {_ci_text(spp[k], n)} | {max(spp) - min(spp):.3f} | "
            f"{fmt['gap']} | {fmt['fixed']} | {'yes' if min(spp) >= TARGET_WORST else 'no'} | "
            f"{'yes' if max(spp) - min(spp) <= TARGET_SPREAD + 1e-9 else 'no'} | {'yes' if beats else 'no'} |"
            + ((" " + ("; ".join(below) if below else "no") + " |") if correct else ""))
    return lines


def plot_buckets(results, path: str | Path = PLOT, buckets=BUCKETS) -> Path:
    """A PNG of accuracy against the shorter side (bucket's geometric middle, log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(np.sqrt(lo * hi)) for lo, hi in buckets]
    tasks = list(dict.fromkeys(r[0] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in results if r[0] == task]
        colors = {n: f"C{i}" for i, n in enumerate(dict.fromkeys(r[1] for r in rows))}  # one colour per model
        for t, name, label, accs in rows:
            style = "-" if label.startswith("none") else ":" if "selected" in label else "--"
            ax.plot(xs, accs, style, color=colors[name], marker="o", label=f"{name}, {label}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{lo}-{hi}" for lo, hi in buckets])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("canvas shorter side (px)")
        ax.set_ylabel("accuracy (held-out)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def buckets_section(plot: str | Path = PLOT, resize: str = "card") -> str:
    """Measure every bucket, draw the plot at ``plot`` and return the Markdown section
    (``resize="none"``: only the rows without a size policy)."""
    results, selection, correct = bucket_results(resize=resize)
    plot_buckets(results, plot)
    return buckets_markdown(results, selection, plot=plot, correct=correct)


def splice(path: str | Path, section: str) -> None:
    """Replace ``path``'s section from :data:`BUCKETS_HEADING` to the end by ``section`` (append it
    when the file has none)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    at = text.find("\n" + BUCKETS_HEADING + "\n")
    head = text if at < 0 else text[:at + 1]
    path.write_text(head.rstrip("\n") + "\n\n" + section if head.strip() else section)


def main(progress: bool = True, buckets_only: bool = False, splice_into: str | Path | None = None,
         plot: str | Path = PLOT, resize: str = "card") -> int:
    """Print every table (or only the size buckets); ``splice_into``: write the size-bucket section
    into that file instead of printing. ``resize``: ``card`` feeds registry models through their
    card's size policy, ``none`` as the images are (the size-bucket table always has both, and
    ``none`` keeps only its policy-off rows)."""
    if resize not in ("card", "none"):
        raise ValueError(f"resize must be card or none, got {resize!r}")
    if buckets_only:
        section = buckets_section(plot, resize)
        if splice_into is not None:
            splice(splice_into, section)
        else:
            print(section, end="")
        return 0
    text = run(progress, resize == "card") + "\n" + buckets_section(plot, resize)
    if splice_into is not None:
        Path(splice_into).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
