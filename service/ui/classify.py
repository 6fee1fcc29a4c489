"""Classify tab: any registered model on an uploaded image, through the engine's
micro-batcher (the same path as ``POST /v1/models/{name}/predict``), resized by the model
card's size policy (``ModelRunner.preprocess``, models/size_policy.py) unless turned off.
The default model is one for photos (``effnet-lite0-imagenet`` when available); example
images (docs/examples/: the cat, the coffee, digits at several sizes) are one click each,
and every answer shows the size policy applied and the card's accuracy by size."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput
from poolops_service.engine.models import top_k
from poolops_service.ui import uploads
from poolops_service.ui.common import error_text, load_pixels
from poolops_service.ui.render import fmt, markdown_table

PHOTO_MODEL = "effnet-lite0-imagenet"
DIGITS_MODEL = "digits-spp"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"
BUCKET = re.compile(r"shorter_side_(\d+)-(\d+)")


@dataclass(frozen=True)
class ExampleImage:
    key: str
    title: str
    path: Path
    model: str  # the model it suits (used when available)


def example_images(root: Path = EXAMPLES_DIR) -> list[ExampleImage]:
    """The example images present: photos (for the photo model) and digits (for digits-spp)."""
    out = []
    for name, title in (("chelsea", "the cat (chelsea)"), ("coffee", "the coffee")):
        f = root / f"{name}.jpg"
        if f.is_file():
            out.append(ExampleImage(name, f"{title}, {_size(f)}", f, PHOTO_MODEL))
    digits = sorted(root.glob("digit-*-*x*.png"), key=lambda f: int(f.stem.rsplit("-", 1)[1].split("x")[0]))
    for f in digits:
        label = f.stem.split("-")[1]
        out.append(ExampleImage(f.stem, f"digit {label}, {_size(f)}", f, DIGITS_MODEL))
    return out


def _size(f: Path) -> str:
    from PIL import Image

    with Image.open(f) as im:
        return f"{im.height}x{im.width}"


def size_accuracy(card, shorter_side: int | None = None) -> str:
    """The card's accuracy by size (metrics named for sizes; every metric if none is), the
    bucket holding ``shorter_side`` marked."""
    rows = []
    by_size = [m for m in card.metrics if "size" in m.name or "side" in m.name] or list(card.metrics)
    for m in by_size:
        b = BUCKET.search(m.name)
        here = b is not None and shorter_side is not None and int(b.group(1)) <= shorter_side <= int(b.group(2))
        rows.append([m.name + (" (this image)" if here else ""), fmt(m.value), m.data])
    if not rows:
        return ""
    return "**Accuracy by size, from the model's card**\n\n" + markdown_table(rows, ["metric", "value", "measured on"])


@dataclass
class ClassifyResult:
    ok: bool
    status: str
    label: dict[str, float] = field(default_factory=dict)  # for gr.Label: label -> probability
    top: list[dict] = field(default_factory=list)
    original_size: tuple[int, int] | None = None  # (H, W) of the uploaded image
    input_size: tuple[int, int] | None = None  # (H, W) fed to the model
    size_policy: str = "none"  # the policy applied, as the API reports it


def model_choices(engine: Engine) -> tuple[list[str], str | None, str]:
    """(available model names, the default one, a note on those that are not available)."""
    names, notes = [], []
    for name in engine.registry:
        st = engine.model_status(name)
        if st["available"]:
            names.append(name)
        else:
            notes.append(f"- `{name}`: {st.get('reason')}")
    if not engine.registry:
        why = engine.failure or f"the engine is {engine.phase}"
        return [], None, f"No models yet ({why}); reload the page when the service is ready."
    default = PHOTO_MODEL if PHOTO_MODEL in names else (names[0] if names else None)
    note = ("Not available:\n" + "\n".join(notes)) if notes else ""
    return names, default, note


def initial_choices(engine: Engine) -> tuple[list[str], str | None]:
    """Choices when the page is built: the engine's, or (while it is still loading) the
    model folders' names, so that the dropdown has a value before the page-load refresh."""
    if engine.registry:
        names, default, _ = model_choices(engine)
        return names, default
    root = Path(engine.settings.models_dir)
    heads = {}
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and not d.name.startswith("."):
            try:
                heads[d.name] = json.loads((d / "card.json").read_text())["head"]["type"]
            except (OSError, ValueError, KeyError, TypeError):
                heads[d.name] = None
    names = list(heads)
    return names, PHOTO_MODEL if PHOTO_MODEL in names else (names[0] if names else None)


def _unique(top: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in top:
        key = t["label"] if t["label"] not in out else f"{t['label']} (#{t['index']})"
        out[key] = t["probability"]
    return out


async def classify(
    engine: Engine, name: str | None, image_path: str | None, k: int = 5, resize: bool = True
) -> ClassifyResult:
    """Top-``k`` labels of ``name`` for the image file, resized by the card's size policy
    unless ``resize`` is off (the API's ``resize=none``); never raises (errors in ``status``)."""
    try:
        if not name:
            raise BadInput("choose a model")
        if not image_path:
            raise BadInput("upload an image to classify")
        runner = engine.runner(name)
        card = runner.card
        t0 = time.perf_counter()
        # decoding in a worker thread: this coroutine runs on the server's event loop
        def decode():
            px = load_pixels(image_path, card.input.channels, engine.settings.max_image_pixels)
            return px.shape[:2], runner.preprocess(px, resize)

        original, chw = await asyncio.to_thread(decode)
        t1 = time.perf_counter()
        (out,) = await engine.infer_images(name, [chw])
        t2 = time.perf_counter()
        top = top_k(card, out.logits, int(k))
    except Exception as e:  # noqa: BLE001
        return ClassifyResult(False, f"**Error:** {error_text(e)}")
    h, w = chw.shape[1:]
    policy = runner.describe_policy(resize)
    if policy == "none":
        how = "no resize, size policy: none" + ("" if resize else " (turned off)")
    else:
        how = f"resized from {original[0]}x{original[1]} by the card's size policy: {policy}"
    status = "\n".join(
        [
            f"**{name}**: {top[0]['label']} ({top[0]['probability']:.1%})",
            f"- input size: {h}x{w} (HxW), {chw.shape[0]} channel(s), {how}"
            + (
                ""
                if card.head.get("resize") in (None, False)
                else f" (the model's head resizes to {card.head.get('resize')})"
            ),
            f"- latency: {(t2 - t1) * 1e3:.1f} ms inference (through the batcher), {(t1 - t0) * 1e3:.1f} ms decoding",
            f"- provider: {runner.provider}",
            f"- head: {card.head.get('type')}, embedding of {out.embedding.shape[-1]} values",
            f"- size policy applied: {policy}; original size {original[0]}x{original[1]}, fed to the model at {h}x{w}",
        ]
    )
    acc = size_accuracy(card, min(original))
    if acc:
        status += "\n\n" + acc
    return ClassifyResult(True, status, _unique(top), top, tuple(original), (h, w), policy)


def build(engine: Engine) -> tuple[gr.Dropdown, gr.Markdown]:
    """The tab; returns (model dropdown, availability note) for the page-load refresh."""
    examples = example_images()
    with gr.Tab("Classify", id="classify"):
        if examples:
            with gr.Row():
                gr.Markdown("**Example images** (one click each, with the model that suits them):")
                ex_buttons = [gr.Button(e.title, size="sm", elem_id=f"cls-ex-{e.key}") for e in examples]
        with gr.Row():
            with gr.Column():
                names, default = initial_choices(engine)
                model = gr.Dropdown(names, value=default, label="Model", elem_id="cls-model")
                note = gr.Markdown(elem_id="cls-note")
                image = uploads.image_input(
                    label="Image (any size)",
                    sources=["upload", "clipboard"],
                    elem_id="cls-image",
                )
                k = gr.Slider(1, 10, value=5, step=1, label="Top k")
                resize = gr.Checkbox(
                    value=True, label="Apply the model card's size policy (off: the image at its own size)",
                    elem_id="cls-resize",
                )
                run = gr.Button("Classify", variant="primary", elem_id="cls-run")
            with gr.Column():
                shown = gr.Image(label="Example image", type="pil", format="png", interactive=False,
                                 elem_id="cls-example-image", height=200)
                label = gr.Label(label="Top k", elem_id="cls-label")
                status = gr.Markdown(elem_id="cls-status")

    uploads.track(image, "cls-image")

    async def on_run(name, path, kk, rs=True):
        try:
            r = await classify(engine, name, path, kk, bool(rs))
        finally:
            uploads.handled(path)
        if not r.ok:
            gr.Warning(r.status.removeprefix("**Error:** "))
        return (r.label or None), r.status

    run.click(on_run, inputs=[model, image, k, resize], outputs=[label, status], api_visibility="private")

    def loader(ex: ExampleImage):
        async def on_example(current, kk, rs):
            names_, _, _ = model_choices(engine)
            name = ex.model if ex.model in names_ else current
            # a file of the repository, not an upload: classify reads it, nothing deletes it
            r = await classify(engine, name, str(ex.path), kk, bool(rs))
            if not r.ok:
                gr.Warning(r.status.removeprefix("**Error:** "))
            from PIL import Image

            with Image.open(ex.path) as im:
                picture = im.convert("RGB")
            return name, picture, (r.label or None), r.status

        return on_example

    for e, b in zip(examples, ex_buttons if examples else []):
        b.click(loader(e), inputs=[model, k, resize], outputs=[model, shown, label, status], api_visibility="private")
    return model, note


def refresh(engine: Engine):
    """Page-load update of the model dropdown (the engine loads in the background)."""
    names, default, note = model_choices(engine)
    return gr.Dropdown(choices=names, value=default), note
