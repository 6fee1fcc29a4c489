"""Compare tab: one input, several ops side by side (default or JSON parameters), and the
sources' examples that compare ops (``poolops.examples.COMPARE_EXAMPLES``) one click each."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from poolops.examples import COMPARE_EXAMPLES, SOURCES, compare_example, matrix_text
from poolops.registry import get_op, list_ops
from poolops_service.engine import Engine
from poolops_service.ui import render, uploads
from poolops_service.ui.common import (
    DEFAULT_MATRIX,
    error_text,
    extra_inputs,
    from_op_rank,
    make_source,
    op_choices,
    parse_params,
    pixel_gallery,
    to_op_rank,
)

DEFAULT_OPS = ("max", "avg", "stochastic", "lp", "mixed", "adaptive_max")
PLANES_PER_OP = 3


@dataclass
class CompareResult:
    ok: bool
    status: str
    gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # op, output shape, provider, ms, note


def _planes(name: str, y) -> list[tuple[Image.Image, str]]:
    return [
        (render.plane_image(p), f"{name} {list(y.shape)} y[{', '.join(map(str, i))}]")
        for i, p in render.planes(y, PLANES_PER_OP)
    ]


def _given(per_op: dict, name: str) -> str:
    return json.dumps(per_op[name]) if per_op.get(name) else "defaults"


SUMMARY_HEADERS = ["op", "parameters", "output shape", "y (first plane, when small)", "provider", "forward ms", "note"]
SMALL_VALUES = 16


async def run_compare(
    engine: Engine,
    names: list[str],
    params_text: str,
    source: str,
    image_path: str | None,
    matrix: str,
    color: str = "gray",
    max_side: int = 128,
) -> CompareResult:
    """Each op in ``names`` on the same input; ``params_text`` is a JSON object
    ``{op: {param: value}}`` (ops not in it use their defaults). An op that fails is a
    row with its message, the others still run."""
    try:
        if not names:
            return CompareResult(False, "**Error:** choose at least one op")
        per_op = parse_params(params_text, "parameters per op")
        unknown = [k for k in per_op if k not in list_ops()]
        if unknown:
            return CompareResult(False, f"**Error:** the parameters name ops that do not exist: {unknown}")
        bad = [k for k, v in per_op.items() if not isinstance(v, dict)]
        if bad:
            return CompareResult(False, f'**Error:** parameters of {bad} must be JSON objects like {{"kernel": 3}}')
        src = await asyncio.to_thread(
            make_source, source, image_path, matrix, color, engine.settings.max_image_pixels, int(max_side or 0)
        )
    except Exception as e:  # noqa: BLE001
        return CompareResult(False, f"**Error:** {error_text(e)}")

    gallery, rows, failed = [], [], 0
    for name in names:
        try:
            spec = get_op(name)
            x, how = to_op_rank(src.x, spec.spatial_dims)
            extra, notes = extra_inputs(spec, x, per_op.get(name, {}))
            if how:
                notes.insert(0, f"{spec.spatial_dims}-D: {how}")
            res = await engine.run_op(
                name,
                params=per_op.get(name, {}),
                x=x,
                extra=extra or None,
                indices=False,
                backward=False,
                grad_output=None,
            )
        except Exception as e:  # noqa: BLE001 - one op's failure is its row
            failed += 1
            rows.append([name, _given(per_op, name), "-", "-", "-", "-", error_text(e)])
            continue
        y = res.outputs["y"]
        shape = list(y.shape)
        gallery += await asyncio.to_thread(_planes, name, from_op_rank(y, spec.spatial_dims, src.x.shape[1]))
        rows.append(
            [
                name,
                _given(per_op, name),
                str(shape),
                _values(y),
                res.provider,
                f"{res.ms.get('forward', 0):.2f}",
                "; ".join(n.split(":")[0] for n in notes),
            ]
        )
    status = f"{len(names) - failed} of {len(names)} ops on {src.note}"
    return CompareResult(failed < len(names), status, gallery, rows)


def _values(y) -> str:
    """The first plane's values, rows separated by ';', when it has at most SMALL_VALUES."""
    first = render.planes(y, 1)
    if not first or first[0][1].size > SMALL_VALUES:
        return "-"
    return "; ".join(" ".join(r) for r in render.table(first[0][1]))


def example_inputs(key: str) -> tuple[list[str], str, str, str]:
    """(ops, parameters per op as JSON, the matrix text, a note) of a compare example."""
    ex = compare_example(key)
    ptext = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in ex.ops.items()) + "\n}"
    note = f"**Example: {ex.title}**. {ex.says} *Source: {SOURCES[ex.source]}.*"
    return list(ex.ops), ptext, matrix_text(ex.x), note


def build(engine: Engine) -> None:
    ops = list_ops()
    examples = [e for e in COMPARE_EXAMPLES if all(o in ops for o in e.ops)]
    with gr.Tab("Compare", id="compare"):
        with gr.Row():
            gr.Markdown("**Examples from the sources** (one click each):")
            ex_buttons = [gr.Button(e.title, size="sm", elem_id=f"cex-{e.key}") for e in examples]
        with gr.Row():
            with gr.Column():
                source = gr.Radio([("Matrix", "matrix"), ("Image", "image")], value="matrix", label="Input")
                matrix = gr.Textbox(DEFAULT_MATRIX, lines=8, label="Matrix (as in the Playground; or 'random 1x64x64x64 seed 0')",
                                    elem_id="cmp-matrix")
                image = uploads.image_input(
                    label="Image",
                    sources=["upload", "clipboard"],
                    elem_id="cmp-image",
                )
                with gr.Row():
                    color = gr.Radio(
                        [("grey, 1 channel", "gray"), ("RGB, 3 channels", "rgb")], value="gray", label="Image as"
                    )
                    max_side = gr.Slider(0, 1024, value=128, step=1, label="Shrink the image to (px; 0 keeps it)")
            with gr.Column():
                names = gr.CheckboxGroup(
                    op_choices(), value=[n for n in DEFAULT_OPS if n in ops], label="Ops", elem_id="cmp-ops"
                )
                params = gr.Code(
                    '{\n  "max": {"kernel": 2},\n  "avg": {"kernel": 2}\n}',
                    language="json",
                    label='Parameters per op (JSON {"op": {...}}; ops not named use their defaults)',
                    elem_id="cmp-params",
                )
                run = gr.Button("Compare", variant="primary", elem_id="cmp-run")
        example_note = gr.Markdown(elem_id="cmp-example")
        status = gr.Markdown(elem_id="cmp-status")
        gallery = pixel_gallery("Output planes (op, output shape, plane)", "cmp-gallery", PLANES_PER_OP)
        summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, wrap=True, elem_id="cmp-summary")

    image.change(uploads.source_for, inputs=image, outputs=source, api_visibility="private")
    uploads.track(image, "cmp-image")

    async def on_run(ns, ptext, src, path, mtext, col, side):
        try:
            r = await run_compare(engine, ns or [], ptext, src, path, mtext, col, side)
        finally:
            uploads.handled(path)
        if not r.ok:
            gr.Warning(r.status.removeprefix("**Error:** "))
        return r.status, r.gallery, {"headers": SUMMARY_HEADERS, "data": r.rows or [["-"] * len(SUMMARY_HEADERS)]}

    run.click(
        on_run,
        inputs=[names, params, source, image, matrix, color, max_side],
        outputs=[status, gallery, summary],
        api_visibility="private",
    )

    def loader(key: str):
        async def on_example():
            ns, ptext, mtext, note = example_inputs(key)
            answer = await on_run(ns, ptext, "matrix", None, mtext, "gray", 0)
            return (ns, ptext, "matrix", mtext, note, *answer)

        return on_example

    for e, b in zip(examples, ex_buttons):
        b.click(loader(e.key), outputs=[names, params, source, matrix, example_note, status, gallery, summary],
                api_visibility="private")
