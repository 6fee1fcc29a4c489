"""Classify tab: any registered model on an uploaded image, through the engine's
micro-batcher (the same path as ``POST /v1/models/{name}/predict``), resized by the model
card's size policy (``ModelRunner.preprocess``, models/size_policy.py) unless turned off."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput
from poolops_service.engine.models import top_k
from poolops_service.ui import uploads
from poolops_service.ui.common import error_text, load_pixels


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
    default = next((n for n in names if _head(engine, n) == "spp"), names[0] if names else None)
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
    return names, next((n for n in names if heads[n] == "spp"), names[0] if names else None)


def _head(engine: Engine, name: str) -> str | None:
    card = engine.registry[name].card
    return card.head.get("type") if card else None


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
        how = "no resize" + ("" if resize else " (size policy turned off)")
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
            f"- size policy: {policy}; original size {original[0]}x{original[1]}, fed to the model at {h}x{w}",
        ]
    )
    return ClassifyResult(True, status, _unique(top), top, tuple(original), (h, w), policy)


def build(engine: Engine) -> tuple[gr.Dropdown, gr.Markdown]:
    """The tab; returns (model dropdown, availability note) for the page-load refresh."""
    with gr.Tab("Classify", id="classify"):
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
    return model, note


def refresh(engine: Engine):
    """Page-load update of the model dropdown (the engine loads in the background)."""
    names, default, note = model_choices(engine)
    return gr.Dropdown(choices=names, value=default), note
