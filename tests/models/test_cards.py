"""The model registry validates every folder and reports broken models without failing the rest."""

from __future__ import annotations

import json

import pytest
import torch

from poolops_models.classifier import build_model
from poolops_models.export import export_classifier
from poolops_models.cards import load_registry, save_model

CONFIG = {
    "backbone": {"type": "small_cnn", "width": 4},
    "head": {"type": "spp", "levels": [1, 2]},
    "num_classes": 3,
}


def card(name: str) -> dict:
    return {
        "name": name,
        "task": "test",
        "labels": ["a", "b", "c"],
        "preprocessing": {"scale": "[0, 1]"},
        "backbone": CONFIG["backbone"],
        "head": CONFIG["head"],
        "input": {"channels": 1, "min_size": [8, 8], "max_size": [64, 64]},
        "metrics": [{"name": "accuracy", "value": 0.5, "data": "nothing, untrained"}],
        "produced_by": "tests",
    }


@pytest.fixture(scope="module")
def proto():
    torch.manual_seed(0)
    return export_classifier(build_model(CONFIG), 1, (16, 16))


@pytest.fixture
def root(tmp_path, proto):
    for name in ("good", "corrupt", "missing", "badcard", "renamed"):
        save_model(tmp_path, proto, card(name))
    data = bytearray((tmp_path / "corrupt" / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "corrupt" / "model.onnx").write_bytes(bytes(data))
    (tmp_path / "missing" / "model.onnx").unlink()
    (tmp_path / "badcard" / "card.json").write_text("{not json")
    c = json.loads((tmp_path / "renamed" / "card.json").read_text())
    c["outputs"] = ["logits"]
    (tmp_path / "renamed" / "card.json").write_text(json.dumps(c))
    return tmp_path


def test_broken_models_are_reported_and_the_rest_load(root):
    reg = load_registry(root)
    assert set(reg) == {"good", "corrupt", "missing", "badcard", "renamed"}
    assert reg["good"].available and reg["good"].reason is None
    assert not reg["corrupt"].available and "sha256" in reg["corrupt"].reason
    assert not reg["missing"].available and "missing" in reg["missing"].reason
    assert not reg["badcard"].available and "card.json" in reg["badcard"].reason
    assert not reg["renamed"].available and "outputs" in reg["renamed"].reason


def test_card_records_checksum_and_labels(root):
    entry = load_registry(root)["good"]
    assert len(entry.card.sha256) == 64
    assert (root / "good" / "labels.txt").read_text().split() == ["a", "b", "c"]


def test_missing_registry_dir_is_empty(tmp_path):
    assert load_registry(tmp_path / "nope") == {}
