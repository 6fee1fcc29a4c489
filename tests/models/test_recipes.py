"""The committed built-in models load, are what their cards say, and work in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from poolops_models.data import digits, layout
from poolops_models.cards import load_registry
from poolops_models.padding import make_padded_batch
from poolops_models.recipes import RECIPES, zoo_dir

REGISTRY = load_registry(zoo_dir())


@pytest.mark.parametrize("name", list(RECIPES))
def test_builtin_model_is_available_with_measured_metrics(name):
    entry = REGISTRY.get(name)
    assert entry is not None, f"{name} is not in {zoo_dir()}: run `poolops export {name}`"
    assert entry.available, entry.reason
    card = entry.card
    assert card.produced_by == f"poolops export {name}"
    from poolops_models.experiments import BUCKETS

    per_size = {f"accuracy_validation_shorter_side_{lo}-{hi}" for lo, hi in BUCKETS}
    assert {m.name for m in card.metrics} == {"accuracy_seen_sizes", "accuracy_unseen_sizes", *per_size}
    assert all(m.data for m in card.metrics)
    assert card.padding_invariant == (card.head["type"] != "fixed")
    # issue 11: multi-size training, a size policy chosen on validation buckets, limits as measured
    assert card.size_policy is not None
    assert card.extra["size_policy_selection"] and card.extra["training"]["sizes"].startswith("multi-size")
    assert tuple(card.input.min_size) == (16, 16) and tuple(card.input.max_size) == (512, 512)


def _render_one(ds, size, rng) -> np.ndarray:
    """One ``[1, H, W]`` image of the dataset."""
    x, _ = ds.render([3], size, rng) if ds is digits else ds.render(1, size, rng)
    return x[0]


@pytest.mark.parametrize("name", [n for n in RECIPES if REGISTRY.get(n) and REGISTRY[n].card.padding_invariant])
def test_builtin_padded_batch_equals_one_by_one(name):
    entry = REGISTRY[name]
    ds = digits if name.startswith("digits") else layout
    rng = np.random.default_rng(0)
    images = [_render_one(ds, size, rng) for size in [(24, 40), (61, 33), (47, 47)]]
    sess = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    x, valid = make_padded_batch(images)
    batched = sess.run(None, {"x": x, "valid": valid})
    for i, im in enumerate(images):
        alone = sess.run(None, {"x": im[None], "valid": valid[i : i + 1]})
        for b, a in zip(batched, alone):
            np.testing.assert_allclose(b[i : i + 1], a, rtol=1e-5, atol=1e-5)


def test_digits_spp_classifies_held_out_digits():
    entry = REGISTRY["digits-spp"]
    _, test_ids = digits.split(seed=0)
    x, y = digits.render(test_ids[:200], (40, 40), np.random.default_rng(5))
    sess = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"x": x, "valid": np.array([[40, 40]] * len(x), np.int64)})[0]
    assert (logits.argmax(1) == y).mean() > 0.8


def test_missing_builtin_is_built_before_use(tmp_path, monkeypatch):
    """What a fresh clone lacks is built by its recipe (here into an empty registry)."""
    import dataclasses

    from poolops_models import recipes
    from poolops_models.recipes import ensure_built

    # the recipe itself, shortened (the full one trains for minutes)
    monkeypatch.setitem(recipes.RECIPES, "digits-gap", dataclasses.replace(recipes.RECIPES["digits-gap"], steps=150))
    built = ensure_built(["digits-gap"], root=tmp_path)
    assert [e.name for e in built] == ["digits-gap"] and built[0].available
    assert ensure_built(["digits-gap"], root=tmp_path) == []  # nothing left to build
    assert built[0].card.metrics[0].value > 0.5
    assert built[0].card.size_policy is not None
