"""Multipart form fields of requests: typed and checked, ``BadInput`` naming the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from poolops_service.codecs.images import COLORS
from poolops_service.engine.errors import BadInput


def flag(form: Mapping[str, Any], field: str, default: bool = False) -> bool:
    """A boolean field: exactly ``true`` or ``false`` (any case), what the schema allows."""
    v = form.get(field)
    if v is None:
        return default
    s = str(v).strip().lower()
    if s in ("true", "false"):
        return s == "true"
    raise BadInput(f"form field {field!r} must be true or false, got {s!r}")


def json_object(form: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A field holding a JSON object; ``{}`` when absent or empty."""
    try:
        value = json.loads(str(form.get(field) or "{}"))
    except json.JSONDecodeError as e:
        raise BadInput(f"form field {field!r} must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise BadInput(f"form field {field!r} must be a JSON object")
    return value


@dataclass(frozen=True)
class ImageOpForm:
    """An op request with an uploaded image (``POST /v1/ops/{name}``, multipart)."""

    filename: str | None
    data: bytes
    color: str  # one of images.COLORS
    params: dict[str, Any]
    return_indices: bool
    backward: bool

    @property
    def what(self) -> str:
        """How error messages name the image."""
        return f"image {self.filename or ''}".strip()


def image_op_form(form: Mapping[str, Any], uploads: list[tuple[str | None, bytes]]) -> ImageOpForm:
    """The fields of an image op request: ``uploads`` (name, bytes) of the field ``image``,
    and ``color``, ``params``, ``return_indices``, ``backward`` from ``form``."""
    if len(uploads) != 1:
        raise BadInput("send exactly one file in the form field 'image'")
    filename, data = uploads[0]
    color = str(form.get("color", "auto"))
    if color not in COLORS:
        raise BadInput(f"color must be auto, gray or rgb, got {color!r}")
    return ImageOpForm(
        filename, data, color, json_object(form, "params"), flag(form, "return_indices"), flag(form, "backward")
    )
