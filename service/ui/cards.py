"""Models tab: every registered model's card and status, from the engine's registry, and the
committed plot of the built-in models' accuracy by image size (docs/accuracy_by_size.png, drawn
by ``poolops experiments``; a static PNG, so serving it imports neither torch nor matplotlib)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from poolops_service.engine import Engine
from poolops_service.ui.render import fmt, markdown_table


#: The accuracy-by-size plot (``poolops experiments --buckets-only --splice docs/experiments.md``).
ACCURACY_PLOT = Path(__file__).resolve().parents[2] / "docs" / "accuracy_by_size.png"
ACCURACY_CAPTION = (
    "Accuracy by image size of the built-in digits and layout models (held-out data, canvases 16..512 px "
    "a side, aspect up to 4:1), with and without their size policy: the tables are in docs/experiments.md, "
    "made by `poolops experiments --buckets-only --splice docs/experiments.md`."
)


def accuracy_plot_html(path: Path = ACCURACY_PLOT) -> str:
    """The plot as an inline ``<img>`` (base64 data URL) with its caption."""
    import base64
    import html

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="Accuracy by image size" style="max-width:100%" src="data:image/png;base64,{data}"/>'
            f"<figcaption>{html.escape(ACCURACY_CAPTION)}</figcaption></figure>")


def _short(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items() if v is not None) or "-"


def card_markdown(engine: Engine, name: str) -> str:
    entry = engine.registry[name]
    st = engine.model_status(name)
    if st["available"]:
        status = "available" + (f", provider {st['provider']}" if st.get("provider") else "")
        if not st.get("ready", True):
            status += ", warming up"
    else:
        status = f"**unavailable**: {st.get('reason')}"
    card = entry.card
    if card is None:
        return f"### {name}\n\n- status: {status}"
    lines = [
        f"### {card.name}",
        "",
        f"*{card.task}*" + (f": {card.description}" if card.description else ""),
        "",
        f"- status: {status}",
        f"- backbone: {_short(card.backbone)}",
        f"- head: {_short(card.head)}",
        (
            f"- input: {card.input.channels} channel(s), {card.input.min_size[0]}x{card.input.min_size[1]} "
            f"up to {card.input.max_size[0]}x{card.input.max_size[1]} (HxW)"
        ),
        f"- size policy: {_policy(card)}",
        f"- padding invariant: {'yes: images of different sizes are batched by padding, with exactly the one-by-one results' if card.padding_invariant else 'no: only images of one size are batched together'}",
        f"- preprocessing: {_short(card.preprocessing)}",
        f"- labels ({len(card.labels)}): {', '.join(card.labels[:12])}{', ...' if len(card.labels) > 12 else ''}",
        f"- produced by: `{card.produced_by}`",
    ]
    if card.metrics:
        rows = [[m.name, fmt(m.value), m.data] for m in card.metrics]
        lines += ["", markdown_table(rows, ["metric", "value", "measured on"])]
    return "\n".join(lines)


def _policy(card) -> str:
    if card.size_policy is None:
        return "none: images are fed at their own size"
    lo, hi = card.size_policy.shorter_side
    return (f"shorter side resized into [{lo}, {hi}] px (bilinear, aspect kept, no crop) before the model; "
            "`resize=none` in a request turns it off")


def cards_markdown(engine: Engine) -> str:
    """All cards, one section each (or why there are none yet)."""
    if not engine.registry:
        why = engine.failure or f"the engine is {engine.phase}"
        return f"No models registered yet ({why}). Models directory: `{engine.settings.models_dir}`."
    return "\n\n---\n\n".join(card_markdown(engine, n) for n in engine.registry)


def build(engine: Engine) -> tuple[gr.Markdown, gr.Button]:
    with gr.Tab("Models", id="models"):
        if ACCURACY_PLOT.is_file():  # inline (a data: URL): no file route, no input component
            gr.HTML(accuracy_plot_html(), elem_id="models-accuracy-by-size")
        refresh = gr.Button("Refresh", size="sm")
        cards = gr.Markdown(elem_id="models-cards")
    refresh.click(lambda: cards_markdown(engine), outputs=cards, api_visibility="private")
    return cards, refresh
