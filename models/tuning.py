"""Recipe choices for the built-in models, made on validation data only (issue 11).

``python -m poolops_models.tuning [--task digits|layout] [VARIANT ...] [--jsonl FILE]`` trains
each variant of the built-in SPP recipe (``models/recipes.py``) with the build's own code
(:func:`recipes.train_recipe`: the training samples only, the size policy chosen on the
validation buckets), and prints each one's accuracy per size bucket on the **validation**
buckets (``experiments.validation_buckets``: digits from the validation samples of
``digits.splits()``, layout at seeds apart from the test buckets') under its selected policy, as
a Markdown table. The test buckets of ``poolops experiments`` are never touched here, so what
wins here can be built and then reported on them honestly.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from typing import Any

from poolops_models.recipes import MULTISIZE, RECIPES, SPP_HEAD, Recipe

#: name -> changes to the task's SPP recipe (``head``: the head config; ``multisize``: recipe
#: overrides; other keys: :class:`Recipe` fields).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "gap head": {"head": {"type": "gap"}},
    "spp avg levels": {"head": {**SPP_HEAD, "mode": "avg"}},
    "spp levels 1, 2": {"head": {**SPP_HEAD, "levels": [1, 2]}},
    "low-res x0.5": {"multisize": {"upscaled": 0.5, "downscaled": 0.2}},
    "2x steps": {"steps": 2400},
    "spp dropout 0.3": {"head": {**SPP_HEAD, "dropout": 0.3}},
    "spp avg levels, low-res x0.5": {"head": {**SPP_HEAD, "mode": "avg"},
                                     "multisize": {"upscaled": 0.5, "downscaled": 0.2}},
}


def variant(task: str, name: str, changes: dict[str, Any]) -> Recipe:
    """The task's SPP recipe with ``changes`` (see :data:`VARIANTS`)."""
    base = RECIPES[f"{task}-spp"]
    changes = dict(changes)
    config = copy.deepcopy(base.config)
    if "head" in changes:
        config["head"] = changes.pop("head")
    if "multisize" in changes:
        changes["multisize"] = {**(base.multisize or MULTISIZE), **changes["multisize"]}
    return dataclasses.replace(base, name=f"{task}-spp ({name})", config=config, **changes)


def tune(task: str, names: list[str], progress: bool = False, out=None) -> list[dict[str, Any]]:
    """Train and validate each named variant; one dict per variant (also written to ``out`` as a JSON line)."""
    from poolops_models import size_policy
    from poolops_models.recipes import train_recipe

    rows = []
    for name in names:
        t0 = time.time()
        _, _, _, _, selection = train_recipe(variant(task, name, VARIANTS[name]), progress)
        policy = selection["policy"]
        row = {"task": task, "variant": name, "policy": size_policy.describe(policy),
               "validation": selection["validation"][size_policy.describe(policy)],
               "all_policies": selection["validation"], "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        if out is not None:
            out.write(json.dumps(row) + "\n")
            out.flush()
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    from poolops_models.experiments import BUCKET_N_PER_SIZE, BUCKET_N_SIZES, BUCKETS

    cols = [f"{lo}-{hi}" for lo, hi in BUCKETS]
    lines = [f"Validation buckets ({BUCKET_N_SIZES * BUCKET_N_PER_SIZE} images each), each variant under "
             "the size policy it selected there:", "",
             "| task | variant | size policy | " + " | ".join(cols) + " | worst | best - worst | training s |",
             "|---|---|---|" + "---:|" * (len(cols) + 3)]
    for r in rows:
        a = r["validation"]
        lines.append(f"| {r['task']} | {r['variant']} | {r['policy']} | " + " | ".join(f"{v:.3f}" for v in a)
                     + f" | {min(a):.3f} | {max(a) - min(a):.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m poolops_models.tuning", description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="*", help=f"default: all of {list(VARIANTS)}")
    p.add_argument("--task", choices=["digits", "layout"], default="digits")
    p.add_argument("--jsonl", type=argparse.FileType("a"), default=None, help="append each result here as it comes")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    import torch

    torch.set_num_threads(2)
    rows = tune(args.task, args.variants or list(VARIANTS), args.progress, args.jsonl)
    sys.stdout.write(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
