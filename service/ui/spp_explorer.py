"""SPP explorer tab: each pyramid level's bins drawn over the image (or a blank canvas of
any size), the pooled values of each level, and the fixed vector length C * sum(n^2) read
from the ``spp`` op's output shape as run by the engine, at the image's size and at other
sizes; the sources' SPP examples (``poolops.examples.SPP_EXAMPLES``) one click each."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from poolops.examples import SOURCES, SPP_EXAMPLES, spp_example
from poolops.ops.spp import DEFAULT_LEVELS
from poolops.params import ParamError
from poolops.registry import get_op
from poolops.shapes import adaptive_bins, sppnet_bins
from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput
from poolops_service.ui import uploads
from poolops_service.ui.common import error_text, image_to_x, load_pixels, pixel_gallery
from poolops_service.ui.render import labelled, markdown_table

#: the example images (``docs/examples/NAME.jpg`` or ``.png``), shown when present
EXAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "examples"

DRAW = 384  # display size (px) of the longer side
OTHER_SIZES = ((7, 5), (37, 53), (160, 96))
SIZES_TEXT = ", ".join(f"{h}x{w}" for h, w in OTHER_SIZES)
MAX_VALUES_LEVEL = 8  # levels up to 8 x 8 bins show their pooled values
MAX_DRAWN_LEVEL = 64  # a level of n bins per side draws n*n rectangles
MAX_CANVAS = 1024
PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]


@dataclass
class SppResult:
    ok: bool
    status: str
    gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    bins_md: str = ""
    length: int | None = None
    sizes: list[list[str]] = field(default_factory=list)  # input HxW, output shape, C*sum(n^2)


EXAMPLE_LEVELS = ",".join(map(str, DEFAULT_LEVELS))
SIZE_HEADERS = ["input HxW", "spp output shape", "C x sum(n²)"]


def parse_levels(text: str) -> tuple[int, ...]:
    """The levels typed as comma-separated numbers; ``BadInput`` unless each can be drawn."""
    parts = [p for p in re.split(r"[,\s]+", (text or "").strip()) if p]
    try:
        levels = tuple(int(p) for p in parts)
    except ValueError:
        raise BadInput(
            f"levels must be whole numbers separated by commas, e.g. {EXAMPLE_LEVELS}; got {text!r}"
        ) from None
    if not levels:
        raise BadInput(f"give at least one level, e.g. {EXAMPLE_LEVELS}")
    if any(n < 1 or n > MAX_DRAWN_LEVEL for n in levels):
        raise BadInput(
            f"each level must be between 1 and {MAX_DRAWN_LEVEL} (bins per side) to be drawn; got {list(levels)}"
        )
    return levels


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Other sizes typed as ``HxW, HxW``; ``BadInput`` unless each is within 1..MAX_CANVAS."""
    out = []
    for part in [q for q in re.split(r"[,;\s]+", (text or "").strip()) if q]:
        m = re.fullmatch(r"(\d+)x(\d+)", part)
        if not m or not all(1 <= int(v) <= MAX_CANVAS for v in m.groups()):
            raise BadInput(f"sizes are HxW with each side in 1..{MAX_CANVAS}, separated by commas; got {part!r}")
        out.append((int(m.group(1)), int(m.group(2))))
    return tuple(out)


def example_image(name: str | None) -> Path | None:
    """An example image by name (``docs/examples/NAME.*``), or None when absent."""
    if not name:
        return None
    found = sorted(EXAMPLE_IMAGES.glob(f"{name}.*")) if EXAMPLE_IMAGES.is_dir() else []
    return found[0] if found else None


def level_values(y: np.ndarray, levels: tuple[int, ...], channels: int) -> str:
    """Each level's pooled values for channel 0 (the vector is C-major per level, levels in order)."""
    out, off = [], 0
    for n in levels:
        block = y[0, off: off + channels * n * n].reshape(channels, n, n)
        off += channels * n * n
        if n <= MAX_VALUES_LEVEL:
            rows, heads = labelled(block[0], "row", "col", corner=f"level {n}")
            out.append(f"**Level {n}: {n}x{n} bins, channel 0 of {channels}** (values {off - channels * n * n}.."
                       f"{off - 1} of the vector hold all channels)\n\n" + markdown_table(rows, heads))
    return "\n\n".join(out)


def spp_params(levels: tuple[int, ...], rule: str, mode: str):
    """The ``spp`` op's parameters, checked by its own model (``BadInput`` naming the bad one)."""
    try:
        return get_op("spp").parse({"levels": list(levels), "bins": rule, "mode": mode})
    except ParamError as e:
        raise BadInput(str(e)) from None


def vector_length(p, channels: int, h: int, w: int) -> int:
    """The length of the ``spp`` vector at ``channels`` x ``h`` x ``w``: the op's shape rule."""
    return int(get_op("spp").shape(p, (1, channels, h, w))[1])


def bins_of(size: int, n: int, rule: str) -> list[tuple[int, int]]:
    """Bin bounds [start, end) along one axis: ``adaptive`` (PyTorch) or ``sppnet`` (paper)."""
    return adaptive_bins(size, n) if rule == "adaptive" else sppnet_bins(size, n)


def describe(size: int, n: int, rule: str, axis: str) -> str:
    b = bins_of(size, n, rule)
    txt = " ".join(f"[{s},{e})" for s, e in b)
    covered = np.zeros(size, bool)
    notes = []
    for s, e in b:
        covered[s:e] = True
    if any(b[i][1] > b[i + 1][0] for i in range(len(b) - 1)):
        notes.append("overlapping")
    if len(set(b)) < len(b):
        notes.append("repeated")
    if not covered.all():
        unused = np.flatnonzero(~covered)
        span = f"{unused.min()}" if unused.min() == unused.max() else f"{unused.min()}..{unused.max()}"
        notes.append(f"{axis} {span} unused")
    return f"{txt}" + (f" ({', '.join(notes)})" if notes else "")


def canvas(h: int, w: int) -> np.ndarray:
    """A checkerboard [h, w, 1] in [0, 1], so that single pixels show under the bins."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.35 + 0.3 * ((yy + xx) % 2)).astype(np.float32)[..., None]


def draw_level(pixels: np.ndarray, n: int, rule: str) -> Image.Image:
    """The n x n bins of one level over the image: each bin outlined and lightly filled
    (overlaps show darker), rows or columns no bin covers hatched grey."""
    h, w = pixels.shape[:2]
    s = DRAW / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    g = np.clip(np.nan_to_num(pixels), 0, 1)
    if g.shape[2] == 1:
        g = np.repeat(g, 3, axis=2)
    rgb = np.round(g[..., :3] * 255).astype(np.uint8)
    base = Image.fromarray(rgb).resize(size, Image.NEAREST).convert("RGBA")
    over = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    rows, cols = bins_of(h, n, rule), bins_of(w, n, rule)

    def px(v: int, limit: int) -> int:
        return min(round(v * s), limit)

    cov_r, cov_c = np.zeros(h, bool), np.zeros(w, bool)
    for i, (r0, r1) in enumerate(rows):
        cov_r[r0:r1] = True
        for j, (c0, c1) in enumerate(cols):
            cov_c[c0:c1] = True
            col = PALETTE[(i * n + j) % len(PALETTE)]
            box = (px(c0, size[0]), px(r0, size[1]), px(c1, size[0]) - 1, px(r1, size[1]) - 1)
            d.rectangle(box, fill=col + (45,), outline=col + (255,), width=2)
    for r in np.flatnonzero(~cov_r):
        d.rectangle((0, px(r, size[1]), size[0] - 1, px(r + 1, size[1]) - 1), fill=(128, 128, 128, 170))
    for c in np.flatnonzero(~cov_c):
        d.rectangle((px(c, size[0]), 0, px(c + 1, size[0]) - 1, size[1] - 1), fill=(128, 128, 128, 170))
    return Image.alpha_composite(base, over).convert("RGB")


async def explore(
    engine: Engine,
    image_path: str | None,
    height: int,
    width: int,
    levels_text: str,
    rule: str = "adaptive",
    mode: str = "max",
    color: str = "gray",
    sizes_text: str = SIZES_TEXT,
) -> SppResult:
    """Bins per level over the image (or an ``height`` x ``width`` canvas when none is
    uploaded) and the ``spp`` vector length, read from the engine's output shape."""
    try:
        levels = parse_levels(levels_text)
        other_sizes = parse_sizes(sizes_text)
        if image_path:
            pixels = await asyncio.to_thread(
                load_pixels, image_path, 3 if color == "rgb" else 1, engine.settings.max_image_pixels
            )
            what = "image"
        else:
            h, w = int(height or 0), int(width or 0)
            if not (1 <= h <= MAX_CANVAS and 1 <= w <= MAX_CANVAS):
                raise BadInput(
                    f"the canvas size must be within 1..{MAX_CANVAS} per side, got {h}x{w}: upload an image for larger sizes"
                )
            pixels = canvas(h, w)
            what = "blank canvas"
        x = image_to_x(pixels)
        c, h, w = x.shape[1:]
        p = spp_params(levels, rule, mode)
        params = p.model_dump(mode="json")
        res = await engine.run_op(
            "spp", params=params, x=x, extra=None, indices=False, backward=False, grad_output=None
        )
        length = int(res.outputs["y"].shape[1])
        sizes = [[f"{h}x{w}", str(list(res.outputs["y"].shape)), str(vector_length(p, c, h, w))]]
        rng = np.random.default_rng(0)
        for oh, ow in other_sizes:
            if (oh, ow) == (h, w):
                continue
            other = await engine.run_op(
                "spp",
                params=params,
                x=rng.random((1, c, oh, ow), dtype=np.float32),
                extra=None,
                indices=False,
                backward=False,
                grad_output=None,
            )
            sizes.append([f"{oh}x{ow}", str(list(other.outputs["y"].shape)), str(vector_length(p, c, oh, ow))])
    except Exception as e:  # noqa: BLE001
        return SppResult(False, f"**Error:** {error_text(e)}")

    gallery = await asyncio.to_thread(
        lambda: [(draw_level(pixels, n, rule), f"level {n}: {n}x{n} bins ({rule})") for n in levels]
    )
    formula = " + ".join(f"{n}²" for n in levels)
    status = (
        f"**Vector length {length}** = C x ({formula}) = {c} x {length // c} for this {what} "
        f"of {h}x{w} (HxW) and for any other size; read from the `spp` op's output shape "
        f"(provider {res.provider}, {res.ms.get('forward', 0):.2f} ms)."
    )
    lines = [f"| level | rows (H={h}) | columns (W={w}) |", "|---|---|---|"]
    for n in levels:
        lines.append(f"| {n} | {describe(h, n, rule, 'rows')} | {describe(w, n, rule, 'columns')} |")
    rule_note = (
        "Adaptive bins: bin i covers [floor(i·a/n), ceil((i+1)·a/n)); they overlap when a is not a multiple of n "
        "and always cover the whole map."
        if rule == "adaptive"
        else "SPP-net bins: window ceil(a/n), stride floor(a/n) (at least 1): trailing rows or columns may be left "
        "unused (grey), and when a < n bins repeat the last row."
    )
    values = level_values(res.outputs["y"], levels, c)
    return SppResult(True, status, gallery, values + "\n\n" + rule_note + "\n\n" + "\n".join(lines), length, sizes)


def example_note(key: str) -> str:
    ex = spp_example(key)
    return f"**Example: {ex.title}**. {ex.says} *Source: {SOURCES[ex.source]}.*"


def build(engine: Engine) -> None:
    examples = [e for e in SPP_EXAMPLES if e.image is None or example_image(e.image) is not None]
    with gr.Tab("SPP explorer", id="spp"):
        with gr.Row():
            gr.Markdown("**Examples from the sources** (one click each):")
            ex_buttons = [gr.Button(e.title, size="sm", elem_id=f"sex-{e.key}") for e in examples]
        with gr.Row():
            with gr.Column():
                image = uploads.image_input(
                    label="Image (optional: without one, a blank canvas of the size below)",
                    sources=["upload", "clipboard"],
                    elem_id="spp-image",
                )
                with gr.Row():
                    height = gr.Number(7, precision=0, minimum=1, maximum=MAX_CANVAS, label="Canvas height",
                                       elem_id="spp-height")
                    width = gr.Number(10, precision=0, minimum=1, maximum=MAX_CANVAS, label="Canvas width",
                                      elem_id="spp-width")
            with gr.Column():
                levels = gr.Textbox(EXAMPLE_LEVELS, label="Levels (bins per side, comma-separated)", elem_id="spp-levels")
                sizes_box = gr.Textbox(SIZES_TEXT, label="Other sizes to run (HxW, comma-separated)", elem_id="spp-sizes")
                rule = gr.Radio(
                    [("adaptive (PyTorch)", "adaptive"), ("SPP-net (paper)", "sppnet")], value="adaptive", label="Bins"
                )
                mode = gr.Radio(["max", "avg"], value="max", label="Pooling in each bin")
                color = gr.Radio(
                    [("grey, 1 channel", "gray"), ("RGB, 3 channels", "rgb")], value="gray", label="Image as"
                )
                run = gr.Button("Show the pyramid", variant="primary", elem_id="spp-run")
        note = gr.Markdown(elem_id="spp-example")
        status = gr.Markdown(elem_id="spp-status")
        gallery = pixel_gallery("Bins of each level", "spp-gallery", 3)
        sizes = gr.Dataframe(
            headers=SIZE_HEADERS,
            interactive=False,
            label="Same length at every size",
            elem_id="spp-sizes-table",
        )
        bins_md = gr.Markdown(elem_id="spp-bins")

    uploads.track(image, "spp-image")

    def answer(res: SppResult):
        if not res.ok:
            gr.Warning(res.status.removeprefix("**Error:** "))
        data = res.sizes or [["-", "-", "-"]]
        return res.status, res.gallery, {"headers": SIZE_HEADERS, "data": data}, res.bins_md

    async def on_run(path, h, w, lv, r, m, col, sz):
        try:
            res = await explore(engine, path, h, w, lv, r, m, col, sz)
        finally:
            uploads.handled(path)
        return answer(res)

    run.click(
        on_run,
        inputs=[image, height, width, levels, rule, mode, color, sizes_box],
        outputs=[status, gallery, sizes, bins_md],
        api_visibility="private",
    )

    def loader(key: str):
        async def on_example():
            ex = spp_example(key)
            (h, w), rest = ex.sizes[0], ex.sizes[1:]
            lv = ", ".join(map(str, ex.levels))
            sz = ", ".join(f"{a}x{b}" for a, b in rest)
            col = "rgb" if ex.channels == 3 else "gray"
            path = example_image(ex.image)  # a file of the repository, not an upload: never deleted
            res = await explore(engine, str(path) if path else None, h, w, lv, "adaptive", ex.mode, col, sz)
            return (h, w, lv, sz, "adaptive", ex.mode, col, example_note(key), *answer(res))

        return on_example

    for e, b in zip(examples, ex_buttons):
        b.click(loader(e.key), outputs=[height, width, levels, sizes_box, rule, mode, color, note, status, gallery,
                                        sizes, bins_md], api_visibility="private")
