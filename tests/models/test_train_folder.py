"""``poolops train --data DIR`` trains, plots, exports and registers a model from an image folder."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from poolops_models.train_folder import scan
from poolops_models.cards import load_registry
from poolops_service.cli import main


def make_folder(root, n=12, seed=0):
    """Two classes of any-size images: a bright blob on the left half or on the right half."""
    rng = np.random.default_rng(seed)
    for cls in ("left", "right"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = int(rng.integers(20, 60)), int(rng.integers(30, 80))
            a = np.zeros((h, w), np.uint8)
            c0 = 0 if cls == "left" else w // 2
            y, x = int(rng.integers(0, h - 6)), int(rng.integers(c0, c0 + w // 2 - 6))
            a[y : y + 6, x : x + 6] = 255
            Image.fromarray(a).save(root / cls / f"{i}.png")


def test_train_command_registers_a_working_model(tmp_path, capsys):
    data, zoo = tmp_path / "data", tmp_path / "zoo"
    make_folder(data)
    assert main(["train", "--data", str(data), "--name", "blobs", "--steps", "40", "--batch-size", "8", "--root", str(zoo)]) == 0
    entry = load_registry(zoo)["blobs"]
    assert entry.available, entry.reason
    assert entry.card.labels == ["left", "right"]
    assert (zoo / "blobs" / "training.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "registered blobs" in out and "accuracy_validation_shorter_side_" in out and "size policy" in out
    assert entry.card.padding_invariant  # small CNN + SPP: takes valid sizes too
    # issue 11: the multi-size recipe, a size policy chosen on the validation split, per-size accuracy
    assert entry.card.size_policy is not None
    assert entry.card.extra["training_sizes"].startswith("multi-size")
    per_size = {m.name: m for m in entry.card.metrics if m.name.startswith("accuracy_validation_shorter_side_")}
    assert set(per_size) <= {f"accuracy_validation_shorter_side_{b}" for b in ("16-31", "32-63")}  # sides 20..79
    assert per_size and all(0.0 <= m.value <= 1.0 and "held-out images whose shorter side" in m.data
                            for m in per_size.values())
    assert set(entry.card.extra["validation_without_size_policy"]["per_size"]) == {k.rsplit("_", 1)[1] for k in per_size}
    sess = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    feeds = {"x": np.zeros((1, 1, 45, 91), np.float32), "valid": np.array([[45, 91]], np.int64)}
    logits, emb = sess.run(None, feeds)
    assert logits.shape == (1, 2) and emb.shape == (1, 64 * 21)


def test_bad_folder_is_a_clear_error(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="at least 2 class subfolders"):
        scan(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        scan(tmp_path / "nope")


def test_train_on_the_frozen_pretrained_backbone(tmp_path):
    data, zoo = tmp_path / "data", tmp_path / "zoo"
    make_folder(data, n=4)
    args = ["train", "--data", str(data), "--name", "blobs-effnet", "--pretrained", "--freeze", "--steps", "3",
            "--batch-size", "4", "--root", str(zoo)]
    assert main(args) == 0
    entry = load_registry(zoo)["blobs-effnet"]
    assert entry.available, entry.reason
    assert entry.card.backbone == {"type": "effnet_lite0", "pretrained": True, "frozen": True}
    assert entry.card.preprocessing["scale"] == "[-1, 1]"
    # issue 11: the pretrained path uses the multi-size recipe and policy selection too
    from poolops_models.train_folder import PRETRAINED_POLICIES

    assert entry.card.extra["training_sizes"].startswith("multi-size") and "random S x S windows" in entry.card.extra["training_sizes"]
    assert entry.card.size_policy is not None
    assert entry.card.size_policy.model_dump() in [dict(p, shorter_side=tuple(p["shorter_side"])) for p in PRETRAINED_POLICIES]
    assert set(entry.card.extra["size_policy_selection"]) == {
        f"shorter side into [{p['shorter_side'][0]}, {p['shorter_side'][1]}]" for p in PRETRAINED_POLICIES}
    per_size = [m for m in entry.card.metrics if m.name.startswith("accuracy_validation_shorter_side_")]
    assert per_size and all(0.0 <= m.value <= 1.0 and "size policy shorter side into" in m.data for m in per_size)
    sess = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    logits, emb = sess.run(None, {"x": np.zeros((1, 3, 45, 91), np.float32)})
    assert logits.shape == (1, 2) and emb.shape == (1, 1280 * 21)
