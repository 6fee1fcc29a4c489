"""The Gradio UI (mounted at ``/ui``): Playground, Compare, SPP explorer, Classify, Models.

Every tab is built from the registries (ops from ``poolops.registry``, models from the
engine's registry), so new ops and models appear without changes here, and every tab
calls the engine, the same service layer as the REST API (ops through
``Engine.run_op``, models through ``Engine.infer_images`` and its micro-batcher).

``build_ui(engine, settings)`` returns the ``gr.Blocks``; ``mount_ui`` mounts it with
the settings this service wants (upload limit, root path, no run history, no footer
links to outside) behind ``guard.UiGuard``. With POOLOPS_API_KEY set, Gradio's login page
asks for a key (any user name, the key as password). Nothing here reaches the network:
Gradio's analytics are off, the theme uses local fonts, and Gradio's files go to their
own temp dir, whose files are deleted (``uploads``) and bounded (``guard``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# before gradio is imported: no telemetry, no version check, no run history kept in browsers
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")

import gradio as gr  # noqa: E402

from poolops_service.config import Settings  # noqa: E402
from poolops_service.engine import Engine  # noqa: E402
from poolops_service.api.auth import Keys  # noqa: E402
from poolops_service.ui import cards, classify, compare, playground, spp_explorer, uploads  # noqa: E402
from poolops_service.ui.guard import UiGuard  # noqa: E402

__all__ = ["build_ui", "mount_ui", "gradio_temp_dir"]

INTRO = (
    "# poolops\n"
    "Pooling operations run exactly by ONNX Runtime, and classifiers that take images of any size. "
    "Everything here goes through the service's engine, like the REST API (`/docs`)."
)
# pooled planes are a few pixels: show their values as crisp squares, not blurred.
# (A <style> element rather than mount-time css, so it holds however the app mounts the UI.)
STYLE = "<style>.poolops-pixels img { image-rendering: pixelated; }</style>"
# Gradio deletes its files older than DELETE_AFTER_S every DELETE_EVERY_S (uploads a session
# still shows, outputs, uploads never used); the temp dir holds at most the stored bounds
DELETE_EVERY_S, DELETE_AFTER_S = 300, 1800
UPLOAD_FILES = 4  # per upload request (the UI sends one)
STORED_FILES = 4096
STORED_BODIES = 8  # the temp dir holds at most this many POOLOPS_MAX_BODY_BYTES
LOGIN_MESSAGE = "This server needs an API key (POOLOPS_API_KEY): any user name, the key as password."


def gradio_temp_dir(settings: Settings) -> Path:
    """Gradio's own temp dir: ``settings.gradio_temp_dir`` (POOLOPS_GRADIO_TEMP_DIR) or a
    fresh one removed at exit; exported as ``GRADIO_TEMP_DIR`` (read by Gradio's components
    and upload route when they are created)."""
    if settings.gradio_temp_dir is not None:
        d = Path(settings.gradio_temp_dir)
        d.mkdir(parents=True, exist_ok=True)
    else:
        current = os.environ.get("GRADIO_TEMP_DIR", "")
        if current and Path(current).name.startswith("poolops-gradio-") and Path(current).is_dir():
            d = Path(current)  # already made by this process (the UI built twice, e.g. in tests)
        else:
            d = Path(tempfile.mkdtemp(prefix="poolops-gradio-"))
            atexit.register(shutil.rmtree, d, True)
    d = Path(os.path.abspath(d))  # the form Gradio writes its paths in
    os.environ["GRADIO_TEMP_DIR"] = str(d)
    return d


def build_ui(engine: Engine, settings: Settings) -> gr.Blocks:
    """The UI's Blocks over ``engine`` (the engine may still be loading: the model list and
    the cards are read on every page load)."""
    gradio_temp_dir(settings)
    with gr.Blocks(title="poolops", analytics_enabled=False, delete_cache=(DELETE_EVERY_S, DELETE_AFTER_S)) as demo:
        gr.HTML(STYLE, container=False, padding=False)
        gr.Markdown(INTRO)
        with gr.Tabs():
            playground.build(engine)
            compare.build(engine)
            spp_explorer.build(engine)
            model_dd, model_note = classify.build(engine)
            cards_md, _ = cards.build(engine)

        def on_load():
            dd, note = classify.refresh(engine)
            return dd, note, cards.cards_markdown(engine)

        demo.load(on_load, outputs=[model_dd, model_note, cards_md], api_visibility="private")
        demo.unload(uploads.release_session)
    return demo


def mount_ui(app, engine: Engine, settings: Settings, path: str = "/ui"):
    """Mount the UI on the FastAPI ``app`` at ``path`` (after the API routers: a mount
    matches every path under it). Uploads are limited to ``settings.max_body_bytes``;
    ``settings.root_path`` (a reverse proxy's prefix) makes Gradio's own URLs public ones.
    With keys (``settings.api_key``), Gradio's login takes one as the password."""
    from starlette.routing import Mount

    root = settings.root_path.rstrip("/")
    keys = Keys(settings.api_key)
    gr.mount_gradio_app(
        app,
        build_ui(engine, settings),
        path=path,
        root_path=f"{root}{path}" if root else None,
        max_file_size=settings.max_body_bytes,
        footer_links=["settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        auth=(lambda _user, password: keys.check(password)) if keys else None,
        auth_message=LOGIN_MESSAGE if keys else None,
    )
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == path)
    gradio_app.add_middleware(
        UiGuard,
        temp_dir=os.environ["GRADIO_TEMP_DIR"],
        keys=keys,
        sessions=lambda: gradio_app.tokens,
        max_files=UPLOAD_FILES,
        max_stored_files=STORED_FILES,
        max_stored_bytes=STORED_BODIES * settings.max_body_bytes,
    )
    return app
