"""Playground tab: one op on an image or a small matrix, its output planes, numbers for
small inputs, and the backward view (where the gradient of sum(y) goes)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

from poolops.registry import get_op, list_ops
from poolops_service.engine import Engine
from poolops_service.ui import render, uploads
from poolops_service.ui.common import (
    DEFAULT_MATRIX,
    SMALL,
    default_params,
    error_text,
    extra_inputs,
    make_source,
    op_choices,
    params_json,
    parse_params,
    pixel_gallery,
)

MAX_PLANES = 8


@dataclass
class PlaygroundResult:
    ok: bool
    status: str  # Markdown: shapes, provider, timings, notes, or the error
    gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    grad_gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    numbers: str = ""  # Markdown tables for small inputs
    shape: tuple[int, ...] | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def op_info(name: str) -> tuple[str, str, dict]:
    """(default parameters as JSON text, the op's doc as Markdown, its parameter JSON schema)."""
    spec = get_op(name)
    notes = []
    if spec.onnx_backward is None:
        notes.append("Backward is not served for this op (the library has it through torch autograd).")
    if spec.input_domain == "nonnegative":
        notes.append("Defined on non-negative input: images are in [0, 1]; a matrix must not be negative.")
    if "indices" in spec.outputs:
        notes.append("Also returns `indices`: flat index `h * W + w` into each (n, c) input plane.")
    extra = [k for k in spec.all_inputs[1:]]
    if extra:
        notes.append(f"Extra inputs: {', '.join(extra)} (required: {', '.join(spec.inputs[1:]) or 'none'}).")
    doc = f"### {name}\n\n{spec.doc.strip()}\n\n" + "\n".join(f"- {n}" for n in notes)
    return params_json(default_params(name)), doc, spec.params.model_json_schema()


def _numbers(label: str, a: np.ndarray) -> str:
    first = render.planes(a, 1)
    if not first:
        return ""
    idx, plane = first[0]
    where = f"[{', '.join(map(str, idx))}]" if idx else ""
    return f"**{label}{where}** ({' x '.join(map(str, plane.shape))})\n\n" + render.markdown_table(render.table(plane))


def _gallery(y: np.ndarray) -> list[tuple[Image.Image, str]]:
    return [
        (render.plane_image(p), f"y[{', '.join(map(str, i))}] {' x '.join(map(str, p.shape))}")
        for i, p in render.planes(y, MAX_PLANES)
    ]


def _grad_gallery(g: np.ndarray) -> list[tuple[Image.Image, str]]:
    return [(render.heatmap(p), f"d sum(y) / d x[{', '.join(map(str, i))}]") for i, p in render.planes(g, 3)]


async def run_playground(
    engine: Engine,
    name: str,
    params_text: str,
    source: str,
    image_path: str | None,
    matrix: str,
    color: str = "gray",
    max_side: int = 128,
    backward: bool = True,
) -> PlaygroundResult:
    """Run op ``name`` through the engine; never raises (errors come back in ``status``)."""
    try:
        if name not in list_ops():
            return PlaygroundResult(False, f"**Error:** unknown op {name!r}")
        spec = get_op(name)
        params = parse_params(params_text)
        # decoding and drawing run in worker threads: this coroutine runs on the server's event loop
        src = await asyncio.to_thread(
            make_source, source, image_path, matrix, color, engine.settings.max_image_pixels, int(max_side or 0)
        )
        x = src.x
        extra, notes = extra_inputs(spec, x, params)
        want_indices = "indices" in spec.outputs
        do_backward = bool(backward) and spec.onnx_backward is not None and not extra
        if backward and spec.onnx_backward is None:
            served = [n for n in list_ops() if get_op(n).onnx_backward is not None]
            notes.append(f"Backward is not served for `{name}` (it is for {', '.join(served)}).")
        elif backward and extra:
            notes.append("Backward is shown for ops that take x alone.")
        t0 = time.perf_counter()
        res = await engine.run_op(
            name, params=params, x=x, extra=extra or None, indices=want_indices, backward=do_backward, grad_output=None
        )
        wall = (time.perf_counter() - t0) * 1e3
    except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
        return PlaygroundResult(False, f"**Error:** {error_text(e)}")

    y = res.outputs["y"]
    gallery = await asyncio.to_thread(_gallery, y)
    lines = [
        f"**{name}** on {src.note}",
        f"- y: {list(y.shape)}"
        + (f", indices: {list(res.outputs['indices'].shape)}" if "indices" in res.outputs else ""),
        f"- provider: {res.provider}",
        "- time: " + ", ".join(f"{k} {v:.2f} ms" for k, v in res.ms.items()) + f" (total {wall:.1f} ms)",
        f"- parameters: `{json.dumps(res.params)}`",
    ]
    if y.ndim == 4 and y.shape[0] * y.shape[1] > MAX_PLANES:
        lines.append(f"- showing the first {MAX_PLANES} of {y.shape[0] * y.shape[1]} planes")
    grad_gallery = []
    if "grad_input" in res.outputs:
        g = res.outputs["grad_input"]
        grad_gallery = await asyncio.to_thread(_grad_gallery, g)
        scale = "blue negative, white 0, red positive" if (g < 0).any() else "black 0, brighter = more gradient"
        lines.append(f"- grad_input: {list(g.shape)}, sum {render.fmt(g.sum())} ({scale})")
    lines += [f"- {n}" for n in notes]

    numbers = ""
    if x.shape[2] <= SMALL and x.shape[3] <= SMALL:
        parts = [_numbers("y", y)]
        if "indices" in res.outputs:
            parts.append(_numbers("indices", res.outputs["indices"]))
        if "grad_input" in res.outputs:
            parts.append(_numbers("grad_input", res.outputs["grad_input"]))
        numbers = "\n\n".join(p for p in parts if p)
    return PlaygroundResult(True, "\n".join(lines), gallery, grad_gallery, numbers, tuple(y.shape), res.outputs)


def build(engine: Engine) -> None:
    """The tab's components and events (inside a ``gr.Blocks`` context)."""
    first = "max" if "max" in list_ops() else list_ops()[0]
    params0, doc0, schema0 = op_info(first)
    with gr.Tab("Playground", id="playground"):
        with gr.Row():
            with gr.Column():
                source = gr.Radio(
                    [("Matrix", "matrix"), ("Image", "image")], value="matrix", label="Input", elem_id="pg-source"
                )
                matrix = gr.Textbox(
                    DEFAULT_MATRIX,
                    lines=8,
                    label="Matrix: rows on lines (or ';'), numbers by spaces or commas; or JSON (H,W / C,H,W / N,C,H,W)",
                    elem_id="pg-matrix",
                )
                image = uploads.image_input(label="Image", sources=["upload", "clipboard"], elem_id="pg-image")
                with gr.Row():
                    color = gr.Radio(
                        [("grey, 1 channel", "gray"), ("RGB, 3 channels", "rgb")], value="gray", label="Image as"
                    )
                    max_side = gr.Slider(
                        0, 1024, value=128, step=1, label="Shrink the image to (px, longer side; 0 keeps it)"
                    )
            with gr.Column():
                op = gr.Dropdown(op_choices(), value=first, label="Op", elem_id="pg-op")
                params = gr.Code(
                    params0, language="json", label="Parameters (JSON; defaults shown)", elem_id="pg-params"
                )
                backward = gr.Checkbox(True, label="Backward: gradient of sum(y) with respect to the input")
                run = gr.Button("Run", variant="primary", elem_id="pg-run")
                with gr.Accordion("About this op", open=False):
                    doc = gr.Markdown(doc0, elem_id="pg-doc")
                    schema = gr.JSON(schema0, label="Parameter schema")
        status = gr.Markdown(elem_id="pg-status")
        with gr.Row():
            out = pixel_gallery("Output planes (each normalised on its own)", "pg-output", 2)
            grad = pixel_gallery("Backward: where the gradient goes", "pg-grad", 2)
        numbers = gr.Markdown(elem_id="pg-numbers")

    op.change(op_info, inputs=op, outputs=[params, doc, schema], api_visibility="private")
    image.change(uploads.source_for, inputs=image, outputs=source, api_visibility="private")
    uploads.track(image, "pg-image")

    async def on_run(name, params_text, src, image_path, matrix_text, color_mode, side, bw):
        try:
            r = await run_playground(
                engine, name, params_text, src, image_path, matrix_text, color_mode, side, bw
            )
        finally:
            uploads.handled(image_path)
        if not r.ok:
            gr.Warning(r.status.removeprefix("**Error:** "))
        return r.status, r.gallery, r.grad_gallery, r.numbers

    run.click(
        on_run,
        inputs=[op, params, source, image, matrix, color, max_side, backward],
        outputs=[status, out, grad, numbers],
        api_visibility="private",
    )
