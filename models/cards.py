"""The model registry: a directory of model folders, validated on load (no web code, no torch).

Each folder ``<root>/<name>/`` holds ``model.onnx`` (dynamic N, H, W), ``card.json``
(a :class:`ModelCard`) and ``labels.txt`` (one label per line). :func:`load_registry`
checks every folder (card schema, checksum, ONNX checker, input and output names,
labels) and reports a broken or missing model as unavailable with the reason while
the others still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CARD = "card.json"
MODEL = "model.onnx"
LABELS = "labels.txt"


class Metric(BaseModel):
    """One measured number and what it was measured on."""

    name: str
    value: float
    data: str = Field(description="the data it was measured on (split, sizes, count)")


class InputSpec(BaseModel):
    name: str = "x"
    channels: int
    layout: str = "NCHW"
    dtype: str = "float32"
    min_size: tuple[int, int] = Field(description="smallest (H, W) the model accepts")
    max_size: tuple[int, int] = Field(description="largest (H, W) it was checked at")


class SizePolicy(BaseModel):
    """How an image is brought to the model's scale before it is fed (models/size_policy.py):
    resize (bilinear, aspect kept, no crop) so that its shorter side lies in [lo, hi];
    a side beyond the card's ``input.max_size`` scales it to fit instead."""

    model_config = ConfigDict(extra="forbid")

    shorter_side: tuple[int, int] = Field(description="[lo, hi]: smaller images scaled up to lo, larger down to hi")

    @model_validator(mode="after")
    def _ordered(self):
        lo, hi = self.shorter_side
        if not 1 <= lo <= hi:
            raise ValueError(f"shorter_side must be [lo, hi] with 1 <= lo <= hi, got {list(self.shorter_side)}")
        return self


class ModelCard(BaseModel):
    """What a model is, how it was made and how well it does."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task: str
    description: str = ""
    labels: list[str]
    preprocessing: dict[str, Any] = Field(description="how images become the input tensor")
    backbone: dict[str, Any]
    head: dict[str, Any]
    input: InputSpec
    outputs: list[str] = ["logits", "embedding"]
    padding_invariant: bool = Field(
        default=False,
        description="the graph takes valid [N, 2] int64 (each image's height, width in a zero-padded "
        "batch) and a padded batch gives exactly the one-by-one results",
    )
    size_policy: SizePolicy | None = Field(
        default=None,
        description="how the server, the UI and `poolops experiments` resize an image before feeding it "
        "(absent: no resizing); /v2 clients apply it themselves",
    )
    metrics: list[Metric] = []
    sha256: str = Field(description="sha256 of model.onnx")
    produced_by: str = Field(description="the command that produced this model")
    extra: dict[str, Any] = {}


@dataclass
class RegisteredModel:
    """A registry entry; ``card`` is None when the card itself could not be read."""

    name: str
    path: Path
    card: ModelCard | None
    available: bool
    reason: str | None = None

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate(folder: Path) -> RegisteredModel:
    """Check one model folder; never raises for a broken model (it is reported)."""
    name = folder.name
    try:
        card = ModelCard.model_validate_json((folder / CARD).read_text())
    except FileNotFoundError:
        return RegisteredModel(name, folder, None, False, f"{CARD} is missing")
    except ValidationError as e:
        return RegisteredModel(name, folder, None, False, f"{CARD} is invalid: {e.errors()[0]['msg']}")

    def broken(reason: str) -> RegisteredModel:
        return RegisteredModel(card.name, folder, card, False, reason)

    if card.name != name:
        return broken(f"card name {card.name!r} differs from the folder name {name!r}")
    model_path = folder / MODEL
    if not model_path.is_file():
        return broken(f"{MODEL} is missing (build it with `poolops export {name}`)")
    if sha256_file(model_path) != card.sha256:
        return broken(f"{MODEL} does not match the card's sha256 (corrupt or replaced)")
    try:
        onnx.checker.check_model(str(model_path))
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - any checker failure makes the model unavailable
        return broken(f"{MODEL} fails the ONNX checker: {e}")
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    expected_inputs = [card.input.name] + (["valid"] if card.padding_invariant else [])
    if inputs != expected_inputs:
        return broken(f"graph inputs {inputs} differ from {expected_inputs} (padding_invariant={card.padding_invariant})")
    if outputs != card.outputs:
        return broken(f"graph outputs {outputs} differ from the card's {card.outputs}")
    labels_path = folder / LABELS
    if not labels_path.is_file() or labels_path.read_text().splitlines() != card.labels:
        return broken(f"{LABELS} is missing or differs from the card's labels")
    return RegisteredModel(card.name, folder, card, True)


def load_registry(root: str | Path) -> dict[str, RegisteredModel]:
    """Every model folder under ``root`` (sorted by name), validated."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {f.name: validate(f) for f in sorted(root.iterdir()) if f.is_dir() and not f.name.startswith(".")}


def save_model(root: str | Path, model: onnx.ModelProto, card: dict[str, Any]) -> RegisteredModel:
    """Write a model folder (``card`` without ``sha256``, which is computed) and validate it."""
    folder = Path(root) / card["name"]
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / MODEL))
    card = {**card, "sha256": sha256_file(folder / MODEL)}
    (folder / CARD).write_text(json.dumps(ModelCard(**card).model_dump(mode="json"), indent=2) + "\n")
    (folder / LABELS).write_text("\n".join(card["labels"]) + "\n")
    entry = validate(folder)
    if not entry.available:
        raise ValueError(f"model {card['name']!r} did not validate after saving: {entry.reason}")
    return entry
