"""Models tab: every registered model's card and status, from the engine's registry."""

from __future__ import annotations

import gradio as gr

from service.engine import Engine
from service.ui.render import fmt, markdown_table


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
        f"- padding invariant: {'yes: images of different sizes are batched by padding, with exactly the one-by-one results' if card.padding_invariant else 'no: only images of one size are batched together'}",
        f"- preprocessing: {_short(card.preprocessing)}",
        f"- labels ({len(card.labels)}): {', '.join(card.labels[:12])}{', ...' if len(card.labels) > 12 else ''}",
        f"- produced by: `{card.produced_by}`",
    ]
    if card.metrics:
        rows = [[m.name, fmt(m.value), m.data] for m in card.metrics]
        lines += ["", markdown_table(rows, ["metric", "value", "measured on"])]
    return "\n".join(lines)


def cards_markdown(engine: Engine) -> str:
    """All cards, one section each (or why there are none yet)."""
    if not engine.registry:
        why = engine.failure or f"the engine is {engine.phase}"
        return f"No models registered yet ({why}). Models directory: `{engine.settings.models_dir}`."
    return "\n\n---\n\n".join(card_markdown(engine, n) for n in engine.registry)


def build(engine: Engine) -> tuple[gr.Markdown, gr.Button]:
    with gr.Tab("Models", id="models"):
        refresh = gr.Button("Refresh", size="sm")
        cards = gr.Markdown(elem_id="models-cards")
    refresh.click(lambda: cards_markdown(engine), outputs=cards, api_visibility="private")
    return cards, refresh
