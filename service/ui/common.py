"""What the tabs share: turning the UI's inputs (an uploaded image file, a matrix typed as
text) into op inputs through the service's own codecs, the op list from the registry, and
error messages for display (never a traceback)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from poolops.inputs import example_inputs, kind
from poolops.registry import OpSpec, get_op, list_ops
from poolops_service.codecs.images import open_image, to_pixels
from poolops_service.engine.errors import BadInput, EngineError

log = logging.getLogger("poolops.ui")

# 8 x 8: every op runs on it with its default parameters (multiscale's largest kernel is 8)
DEFAULT_MATRIX = "8 0 1 2 1 8 8 5\n0 0 3 4 6 4 2 1\n6 7 0 1 4 3 8 5\n4 4 6 5 1 7 7 9\n7 2 3 6 6 6 8 2\n9 0 0 9 9 2 1 3\n0 8 6 5 2 4 1 7\n4 0 2 7 5 3 2 0"
SMALL = 16  # inputs up to SMALL x SMALL also show their numbers


def error_text(e: BaseException) -> str:
    """A message for the user: an engine error's own message, else the exception in one line."""
    if isinstance(e, EngineError):
        return e.message
    log.exception("UI handler failed", exc_info=e)
    return f"internal error ({type(e).__name__}): {e}"


# ---------------------------------------------------------------- inputs


def parse_matrix(text: str) -> np.ndarray:
    """A matrix typed as text -> x [N, C, H, W] float32.

    ``random AxBxCxD seed S``: a random normal input (:func:`random_input`).

    Rows on lines (or separated by ``;``), numbers separated by spaces or commas: one
    plane. A JSON nested list is also taken: 2-D (one plane), 3-D (C, H, W), 4-D (NCHW).
    """
    text = (text or "").strip()
    if not text:
        raise BadInput("the matrix is empty: type rows of numbers, e.g. '1 3; 2 2'")
    m = RANDOM.fullmatch(text)
    if m:
        return random_input(m)
    if text.startswith("["):
        try:
            a = np.asarray(json.loads(text), dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise BadInput(f"the matrix is not a rectangular JSON list of numbers: {e}") from None
        if a.ndim not in (2, 3, 4) or a.size == 0:
            raise BadInput(f"a JSON matrix must be 2-D, 3-D (C, H, W) or 4-D (N, C, H, W), got shape {list(a.shape)}")
        return a.reshape((1,) * (4 - a.ndim) + a.shape)
    rows = [r for r in re.split(r"[;\n]", text) if r.strip()]
    values = []
    for i, r in enumerate(rows):
        try:
            values.append([float(v) for v in re.split(r"[,\s]+", r.strip()) if v])
        except ValueError as e:
            raise BadInput(f"row {i + 1} of the matrix has something that is not a number: {e}") from None
    widths = {len(r) for r in values}
    if len(widths) != 1:
        raise BadInput(
            f"the matrix rows have different lengths {[len(r) for r in values]}: every row needs as many numbers"
        )
    return np.asarray(values, np.float32)[None, None]


RANDOM = re.compile(r"random\s+(\d+(?:\s*x\s*\d+){1,3})(?:\s+seed\s+(\d+))?", re.IGNORECASE)
MAX_RANDOM = 1 << 22  # elements of a 'random' input (16 MB)


def random_input(m: re.Match) -> np.ndarray:
    """``random 1x64x64x64 seed 0``: standard normal values from ``numpy.random.default_rng(seed)``
    (what ``poolops.examples.Random`` means), H x W, C x H x W or N x C x H x W."""
    shape = tuple(int(v) for v in re.split(r"\s*x\s*", m.group(1)))
    n = int(np.prod(shape))
    if n < 1 or n > MAX_RANDOM:
        raise BadInput(f"a random input has 1..{MAX_RANDOM} elements, got shape {list(shape)}")
    a = np.random.default_rng(int(m.group(2) or 0)).standard_normal(shape).astype(np.float32)
    return a.reshape((1,) * (4 - a.ndim) + a.shape)


def load_pixels(path: str | Path, channels: int, max_pixels: int, max_side: int = 0) -> np.ndarray:
    """An uploaded image file -> [H, W, channels] float32 in [0, 1] (the API's decoder:
    pixel limit checked before decoding, EXIF, alpha, 16-bit, CMYK handled).
    ``max_side`` > 0 shrinks a larger image (aspect kept) for display-sized exploring."""
    data = Path(path).read_bytes()
    im = open_image(data, max_pixels, "the uploaded image")
    px = to_pixels(im, channels, "the uploaded image")
    h, w = px.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        bands = [Image.fromarray(px[..., c], mode="F").resize(size, Image.BILINEAR) for c in range(channels)]
        px = np.stack([np.asarray(b, np.float32) for b in bands], axis=2)
    return px


def image_to_x(pixels: np.ndarray) -> np.ndarray:
    """[H, W, C] -> [1, C, H, W] float32."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def to_op_rank(x: np.ndarray, spatial_dims: int) -> tuple[np.ndarray, str]:
    """An image or matrix ``[1, C, H, W]`` as the input of an op with ``spatial_dims`` axes,
    and how it was made: 1-D ops take each row of each channel as a signal
    (``[1, C*H, W]``), 3-D ops take the channels as the depth (``[1, 1, C, H, W]``)."""
    n, c, h, w = x.shape
    if spatial_dims == 1:
        return x.reshape(n, c * h, w), f"each of the {c * h} rows a signal: [N, C, L] = {[n, c * h, w]}"
    if spatial_dims == 3:
        return x.reshape(n, 1, c, h, w), f"the {c} channel(s) as the depth: [N, C, D, H, W] = {[n, 1, c, h, w]}"
    return x, ""


def from_op_rank(a: np.ndarray, spatial_dims: int, channels: int) -> np.ndarray:
    """An op's 1-D or 3-D output or gradient back as ``[N, C', H', W']`` planes to draw:
    the inverse of :func:`to_op_rank` (1-D: ``[N, C*H, L']`` -> ``[N, C, H, L']``; 3-D:
    ``[N, 1, D', H', W']`` -> ``[N, D', H', W']``)."""
    if spatial_dims == 1 and a.ndim == 3:
        n, ch, length = a.shape
        return a.reshape(n, channels, ch // channels, length) if ch % channels == 0 else a[:, None]
    if spatial_dims == 3 and a.ndim == 5:
        n, c, d, h, w = a.shape
        return a.reshape(n, c * d, h, w)
    return a


@dataclass
class Source:
    """An op input chosen in the UI and how it was made."""

    x: np.ndarray
    note: str


def make_source(
    source: str, image_path: str | None, matrix: str, color: str, max_pixels: int, max_side: int = 0
) -> Source:
    """``source`` 'image' (the uploaded file, ``color`` 'gray' or 'rgb') or 'matrix'."""
    if source == "image":
        if not image_path:
            raise BadInput("no image uploaded: upload one, or choose the matrix input")
        px = load_pixels(image_path, 3 if color == "rgb" else 1, max_pixels, max_side)
        x = image_to_x(px)
        return Source(x, f"image {x.shape[2]}x{x.shape[3]} (HxW), {x.shape[1]} channel(s), values in [0, 1]")
    x = parse_matrix(matrix)
    return Source(x, f"matrix {list(x.shape)} (NCHW)")


# ---------------------------------------------------------------- ops


def missing_inputs(spec: OpSpec) -> list[str]:
    """Required extra inputs the UI has no way to make (no example generator)."""
    return [k for k in spec.inputs[1:] if kind_example(k) is None]


def kind_example(name: str):
    try:
        return kind(name).example
    except ValueError:
        return None


def op_label(name: str) -> str:
    spec = get_op(name)
    label = f"{name} ({spec.family})" if spec.family else name
    gen = [k for k in spec.inputs[1:] if kind_example(k) is not None]
    if missing_inputs(spec):
        label += f" - needs inputs: {', '.join(missing_inputs(spec))}"
    elif gen:
        label += f" - example {', '.join(gen)}"
    return label


def op_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered op, in registry order."""
    return [(op_label(n), n) for n in list_ops()]


def default_params(name: str) -> dict:
    return get_op(name).params().model_dump(mode="json")


def params_json(params: dict) -> str:
    """A parameter object as JSON, one parameter per line (lists kept on their line)."""
    if not params:
        return "{}"
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in params.items()) + "\n}"


def parse_params(text: str, what: str = "parameters") -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        p = json.loads(text)
    except ValueError as e:
        raise BadInput(f'the {what} are not valid JSON ({e}): write an object like {{"kernel": 2}}') from None
    if not isinstance(p, dict):
        raise BadInput(f'the {what} must be a JSON object like {{"kernel": 2}}, got {type(p).__name__}')
    return p


def extra_inputs(spec: OpSpec, x: np.ndarray, params: dict | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Example values for the op's required extra inputs (fixed seed), with notes.

    ``BadInput`` naming them when one has no example generator."""
    missing = missing_inputs(spec)
    if missing:
        docs = "; ".join(f"{k}: {kind(k).doc}" if kind_example(k) is None and _known(k) else k for k in missing)
        raise BadInput(
            f"{spec.name} needs inputs the UI cannot provide ({docs}); use the API (POST /v1/ops/{spec.name})",
            op=spec.name,
        )
    try:  # generators may depend on the parameters (e.g. RoI offsets on output_size)
        p = spec.parse(params or {})
    except ValueError as e:
        raise BadInput(str(e), op=spec.name) from None
    made = example_inputs(spec.inputs[1:], x.shape, np.random.default_rng(0), p)
    extra, notes = {}, []
    for k in spec.inputs[1:]:
        extra[k] = np.asarray(made[k])
        notes.append(f"input `{k}` {list(extra[k].shape)} is an example made by its generator (seed 0): {kind(k).doc}")
    return extra, notes


def _known(k: str) -> bool:
    try:
        kind(k)
        return True
    except ValueError:
        return False


def pixel_gallery(label: str, elem_id: str, columns: int = 2):
    """A gallery of output planes, drawn with sharp pixels."""
    import gradio as gr

    return gr.Gallery(
        label=label, format="png", columns=columns, object_fit="contain", fit_columns=False,
        elem_classes="poolops-pixels", elem_id=elem_id,
    )
