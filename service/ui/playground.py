"""Playground tab: one op on an image or a small matrix: its output planes, the numbers for
small inputs (tables headed by their indices), the input with the pooling windows drawn
over it (choosing an output cell shows its window and where its gradient goes: for max,
the argmax), the backward pass over the input, stochastic pooling's window probabilities
and train-mode samples, and the sources' worked examples one click each
(``poolops.examples``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from poolops.examples import OP_EXAMPLES, SOURCES, matrix_text, op_example
from poolops.registry import get_op, list_ops
from poolops_service.engine import Engine
from poolops_service.ui import render, uploads, windows
from poolops_service.ui.common import (
    DEFAULT_MATRIX,
    SMALL,
    default_params,
    error_text,
    extra_inputs,
    from_op_rank,
    make_source,
    op_choices,
    params_json,
    parse_matrix,
    parse_params,
    pixel_gallery,
    to_op_rank,
)

MAX_PLANES = 8
SAMPLE_SEEDS = 8  # stochastic pooling in train mode: the samples of seeds 0..7


@dataclass
class PlaygroundResult:
    ok: bool
    status: str  # Markdown: shapes, provider, timings, notes, or the error
    gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    grad_gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    numbers: str = ""  # Markdown tables for small inputs
    shape: tuple[int, ...] | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    y_table: dict = field(default_factory=lambda: {"headers": ["y"], "data": [["-"]]})
    windows_image: Image.Image | None = None  # the input with the windows, cell (0, 0) chosen
    windows_note: str = ""
    backward_image: Image.Image | None = None  # the gradient over the input
    stochastic: str = ""  # window probabilities and train-mode samples
    state: dict[str, Any] = field(default_factory=dict)  # what choosing another output cell needs


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


def _index(idx: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, idx))}]" if idx else ""


def _numbers(label: str, a: np.ndarray, rows: str = "i", cols: str = "j") -> str:
    first = render.planes(a, 1)
    if not first:
        return ""
    idx, plane = first[0]
    return (f"**{label}{_index(idx)}** ({' x '.join(map(str, plane.shape))})\n\n"
            + render.markdown_table(*render.labelled(plane, rows, cols)))


def _gallery(y: np.ndarray) -> list[tuple[Image.Image, str]]:
    return [
        (render.plane_image(p), f"y[{', '.join(map(str, i))}] {' x '.join(map(str, p.shape))}")
        for i, p in render.planes(y, MAX_PLANES)
    ]


def _grad_gallery(g: np.ndarray) -> list[tuple[Image.Image, str]]:
    return [(render.heatmap(p), f"d L / d x[{', '.join(map(str, i))}]") for i, p in render.planes(g, 3)]


def y_table(y: np.ndarray) -> dict:
    """The first plane of ``y`` for a Dataframe: row labels ``i=0..``, columns ``j=0..``."""
    idx, plane = render.planes(y, 1)[0]
    rows, headers = render.labelled(plane, "i", "j", corner=f"y{_index(idx)}")
    return {"headers": headers, "data": rows}


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
    grad_text: str = "",
) -> PlaygroundResult:
    """Run op ``name`` through the engine; never raises (errors come back in ``status``).

    ``grad_text``: the gradient arriving at ``y`` (a matrix like the input's; blank: ones,
    the gradient of ``sum(y)``)."""
    try:
        if name not in list_ops():
            return PlaygroundResult(False, f"**Error:** unknown op {name!r}")
        spec = get_op(name)
        params = parse_params(params_text)
        # decoding and drawing run in worker threads: this coroutine runs on the server's event loop
        src = await asyncio.to_thread(
            make_source, source, image_path, matrix, color, engine.settings.max_image_pixels, int(max_side or 0)
        )
        x = src.x  # [1, C, H, W]: what is drawn; the op gets it in its own rank
        sd = spec.spatial_dims
        x_op, how = to_op_rank(x, sd)
        extra, notes = extra_inputs(spec, x_op, params)
        if how:
            notes.insert(0, f"A {sd}-D op: {how}; drawn back as planes.")
        want_indices = "indices" in spec.outputs
        do_backward = bool(backward) and spec.onnx_backward is not None and not extra
        if backward and spec.onnx_backward is None:
            served = [n for n in list_ops() if get_op(n).onnx_backward is not None]
            notes.append(f"Backward is not served for `{name}` (it is for {', '.join(served)}).")
        elif backward and extra:
            notes.append("Backward is shown for ops that take x alone.")
        grad_y = parse_matrix(grad_text) if do_backward and (grad_text or "").strip() else None
        t0 = time.perf_counter()
        res = await engine.run_op(
            name, params=params, x=x_op, extra=extra or None, indices=want_indices, backward=do_backward,
            grad_output=None if grad_y is None else to_op_rank(grad_y, sd)[0],
        )
        outputs = {k: from_op_rank(v, sd, x.shape[1]) for k, v in res.outputs.items()}
        wall = (time.perf_counter() - t0) * 1e3
        p = spec.parse(params)
    except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
        return PlaygroundResult(False, f"**Error:** {error_text(e)}")

    y = outputs["y"]
    gallery = await asyncio.to_thread(_gallery, y)
    lines = [
        f"**{name}** on {src.note}",
        f"- y: {list(res.outputs['y'].shape)}"
        + (f", indices: {list(res.outputs['indices'].shape)}" if "indices" in res.outputs else ""),
        f"- provider: {res.provider}",
        "- time: " + ", ".join(f"{k} {v:.2f} ms" for k, v in res.ms.items()) + f" (total {wall:.1f} ms)",
        f"- parameters: `{json.dumps(res.params)}`",
    ]
    if y.ndim == 4 and y.shape[0] * y.shape[1] > MAX_PLANES:
        lines.append(f"- showing the first {MAX_PLANES} of {y.shape[0] * y.shape[1]} planes")
    grad_gallery, backward_image = [], None
    small = x.shape[2] <= SMALL and x.shape[3] <= SMALL
    if "grad_input" in outputs:
        g = outputs["grad_input"]
        grad_gallery = await asyncio.to_thread(_grad_gallery, g)
        scale = "blue negative, white 0, red positive" if (g < 0).any() else "black 0, brighter = more gradient"
        what = "sum(y * dL/dy)" if grad_y is not None else "sum(y)"
        lines.append(f"- grad_input: {list(g.shape)}, the gradient of {what}, sum {render.fmt(g.sum())} ({scale})")
        backward_image = await asyncio.to_thread(_backward_view, x[0, 0], g[0, 0], small)
    lines += [f"- {n}" for n in notes]

    numbers = ""
    if small:
        parts = [_numbers("x", x, "h", "w"), _numbers("y", y)]
        if "indices" in outputs:
            parts.append(_numbers("indices", outputs["indices"]))
        if grad_y is not None:
            parts.append(_numbers("dL/dy", grad_y))
        if "grad_input" in outputs:
            parts.append(_numbers("grad_input", outputs["grad_input"], "h", "w"))
        numbers = "\n\n".join(q for q in parts if q)
    state = {"name": name, "params": res.params, "x": x, "y": y, "small": small,
             "backward": spec.onnx_backward is not None and not extra and y.ndim == 4 and sd == 2}
    stochastic = ""
    if name == "stochastic" and y.ndim == 4 and small:
        stochastic = await _stochastic(engine, x, y, p, params)
    result = PlaygroundResult(True, "\n".join(lines), gallery, grad_gallery, numbers, tuple(y.shape), res.outputs,
                              stochastic=stochastic, state=state, backward_image=backward_image)
    if y.ndim == 4 and small:
        result.y_table = y_table(y)
    if y.ndim == 4 and sd == 2:  # windows are drawn for 2-D ops
        result.windows_image, result.windows_note = await cell_view(engine, state, 0, 0)
    return result


def _backward_view(x_plane: np.ndarray, g_plane: np.ndarray, small: bool) -> Image.Image:
    labels = {(r, c): f"g={render.fmt(g_plane[r, c])}" for r, c in zip(*np.nonzero(g_plane))} if small else None
    return windows.draw(x_plane, marks=g_plane, labels=labels, numbers=small)


async def cell_view(engine: Engine, state: dict, i: int, j: int) -> tuple[Image.Image | None, str]:
    """The input with every window outlined, output cell ``(i, j)``'s window in red and
    where its gradient goes (the one-hot backward, run by the engine) in orange."""
    if not state:
        return None, ""
    spec = get_op(state["name"])
    x, y = state["x"], state["y"]
    oh, ow = y.shape[-2:]
    if not (0 <= i < oh and 0 <= j < ow):
        return None, f"no output cell ({i}, {j}): y is {oh} x {ow}"
    p = spec.parse(state["params"])
    box = windows.window_of(p, x.shape, y.shape, i, j)
    marks = None
    if state["backward"]:
        one_hot = np.zeros_like(y)
        one_hot[0, 0, i, j] = 1
        try:
            res = await engine.run_op(
                state["name"], params=state["params"], x=x, extra=None, indices=False, backward=True,
                grad_output=one_hot,
            )
            marks = res.outputs["grad_input"][0, 0]
        except Exception as e:  # noqa: BLE001
            return None, f"**Error:** {error_text(e)}"
    x0 = x[0, 0]
    labels = {}
    if state["name"] == "stochastic" and box is not None:
        pr = windows.probabilities(x0, box)
        if pr is not None:
            r0, _, c0, _ = box
            labels = {(r0 + a, c0 + b): f"p={render.fmt(pr[a, b])}" for a in range(pr.shape[0]) for b in range(pr.shape[1])}
    img = await asyncio.to_thread(
        windows.draw, x0, windows.all_windows(p, x.shape, y.shape), box, marks, labels, state["small"]
    )
    parts = [f"**y[0, 0, {i}, {j}] = {render.fmt(y[0, 0, i, j])}**"]
    if box is not None:
        r0, r1, c0, c1 = box
        parts.append(f"window: rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1} (red)")
    if marks is not None:
        nz = list(zip(*np.nonzero(marks)))
        if state["name"] == "max" or (len(nz) == 1 and state["name"] in ("stochastic",)):
            if len(nz) == 1:
                r, c = nz[0]
                parts.append(f"argmax x[{r}, {c}] = {render.fmt(x0[r, c])}: the gradient goes there (orange)")
        elif nz:
            parts.append(f"its gradient reaches {len(nz)} input cell(s) (orange, stronger = more)")
    return img, "; ".join(parts)


async def _stochastic(engine: Engine, x: np.ndarray, y: np.ndarray, p, params: dict) -> str:
    """Each window's probabilities ``x_i / sum(x)`` and, in train mode, the samples of a few seeds."""
    x0 = x[0, 0]
    oh, ow = y.shape[-2:]
    rows = []
    for i in range(oh):
        for j in range(ow):
            box = windows.window_of(p, x.shape, y.shape, i, j)
            r0, r1, c0, c1 = box
            vals = x0[r0:r1, c0:c1].ravel()
            pr = windows.probabilities(x0, box)
            probs = "all zero: 0" if pr is None else ", ".join(render.fmt(v) for v in pr.ravel())
            expect = "-" if pr is None else render.fmt(float((pr.ravel() * vals).sum()))
            rows.append([f"({i}, {j})", ", ".join(render.fmt(v) for v in vals), probs, expect])
    out = ["**Stochastic pooling: each window's probabilities x / sum(x)**", "",
           render.markdown_table(rows, ["window (i, j)", "values (row-major)", "probabilities", "expectation"])]
    if p.mode == "train":
        samples = []
        for seed in range(SAMPLE_SEEDS):
            res = await engine.run_op(
                "stochastic", params={**params, "seed": seed}, x=x, extra=None, indices=False, backward=False,
                grad_output=None,
            )
            samples.append([str(seed)] + [render.fmt(v) for v in res.outputs["y"][0, 0].ravel()])
        heads = ["seed"] + [f"y({i}, {j})" for i in range(oh) for j in range(ow)]
        out += ["", f"**Train mode: one value per window, drawn with those probabilities (seeds 0-{SAMPLE_SEEDS - 1})**",
                "", render.markdown_table(samples, heads)]
    return "\n".join(out)


def example_markdown(key: str) -> str:
    ex = op_example(key)
    return f"**Example: {ex.title}**. {ex.says} *Source: {SOURCES[ex.source]}.*"


def build(engine: Engine) -> None:
    """The tab's components and events (inside a ``gr.Blocks`` context)."""
    first = "max" if "max" in list_ops() else list_ops()[0]
    params0, doc0, schema0 = op_info(first)
    examples = [e for e in OP_EXAMPLES if e.op in list_ops()]
    with gr.Tab("Playground", id="playground"):
        with gr.Row():
            gr.Markdown("**Examples from the sources** (one click each):")
            ex_buttons = [gr.Button(e.title, size="sm", elem_id=f"ex-{e.key}") for e in examples]
        with gr.Row():
            with gr.Column():
                source = gr.Radio(
                    [("Matrix", "matrix"), ("Image", "image")], value="matrix", label="Input", elem_id="pg-source"
                )
                matrix = gr.Textbox(
                    DEFAULT_MATRIX,
                    lines=8,
                    label="Matrix: rows on lines (or ';'), numbers by spaces or commas; JSON (H,W / C,H,W / N,C,H,W); "
                    "or 'random 1x3x32x32 seed 0'",
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
                backward = gr.Checkbox(True, label="Backward: the gradient with respect to the input")
                grad_y = gr.Textbox(
                    "", lines=1, label="Gradient arriving at y, dL/dy (a matrix shaped like y; blank: ones, "
                    "the gradient of sum(y))", elem_id="pg-grad-y",
                )
                run = gr.Button("Run", variant="primary", elem_id="pg-run")
                with gr.Accordion("About this op", open=False):
                    doc = gr.Markdown(doc0, elem_id="pg-doc")
                    schema = gr.JSON(schema0, label="Parameter schema")
        example_note = gr.Markdown(elem_id="pg-example")
        status = gr.Markdown(elem_id="pg-status")
        with gr.Row():
            with gr.Column():
                y_frame = gr.Dataframe(
                    headers=["y"], value=[["-"]], interactive=False, label="y (choose a cell to see its window)",
                    elem_id="pg-y-table",
                )
                cell_note = gr.Markdown(elem_id="pg-cell")
            with gr.Column():
                win = gr.Image(label="The input with the pooling windows (red: the chosen cell's window; orange: "
                               "where its gradient goes)", type="pil", format="png", elem_id="pg-windows",
                               interactive=False)
        with gr.Row():
            bw_img = gr.Image(label="Backward over the input: the gradient each input cell gets (orange, g=...)",
                              type="pil", format="png", elem_id="pg-backward", interactive=False)
            out = pixel_gallery("Output planes (each normalised on its own)", "pg-output", 2)
            grad = pixel_gallery("Backward: where the gradient goes", "pg-grad", 2)
        stoch = gr.Markdown(elem_id="pg-stochastic")
        numbers = gr.Markdown(elem_id="pg-numbers")
        state = gr.State({})

    # .input, not .change: an example sets the op and its own parameters together
    op.input(op_info, inputs=op, outputs=[params, doc, schema], api_visibility="private")
    image.change(uploads.source_for, inputs=image, outputs=source, api_visibility="private")
    uploads.track(image, "pg-image")

    outputs = [status, out, grad, numbers, y_frame, win, cell_note, bw_img, stoch, state]

    def _answer(r: PlaygroundResult):
        if not r.ok:
            gr.Warning(r.status.removeprefix("**Error:** "))
        return (r.status, r.gallery, r.grad_gallery, r.numbers, r.y_table, r.windows_image, r.windows_note,
                r.backward_image, r.stochastic, r.state)

    async def on_run(name, params_text, src, image_path, matrix_text_, color_mode, side, bw, gtext):
        try:
            r = await run_playground(
                engine, name, params_text, src, image_path, matrix_text_, color_mode, side, bw, gtext
            )
        finally:
            uploads.handled(image_path)
        return _answer(r)

    run.click(
        on_run,
        inputs=[op, params, source, image, matrix, color, max_side, backward, grad_y],
        outputs=outputs,
        api_visibility="private",
    )

    def loader(key: str):
        async def on_example():
            ex = op_example(key)
            ptext = params_json(ex.params)
            mtext = matrix_text(ex.x)
            gtext = matrix_text(ex.grad_y) if ex.grad_y is not None else ""
            r = await run_playground(engine, ex.op, ptext, "matrix", None, mtext, "gray", 0, True, gtext)
            _, doc_, schema_ = op_info(ex.op)
            return ("matrix", mtext, ex.op, ptext, doc_, schema_, True, gtext, example_markdown(key), *_answer(r))

        return on_example

    for e, b in zip(examples, ex_buttons):
        b.click(
            loader(e.key),
            outputs=[source, matrix, op, params, doc, schema, backward, grad_y, example_note, *outputs],
            api_visibility="private",
        )

    async def on_select(st, evt: gr.SelectData):
        i, col = evt.index if isinstance(evt.index, (list, tuple)) else (0, 0)
        return await cell_view(engine, st, int(i), max(int(col) - 1, 0))

    y_frame.select(on_select, inputs=[state], outputs=[win, cell_note], api_visibility="private")
