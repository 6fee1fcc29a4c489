"""The UI in a real headless Chromium, served by a real uvicorn server running
``create_app(settings)``: upload an image and run an op in the Playground, switch ops,
see an error as a message, classify a digit with ``digits-spp`` (the same answer as the
REST API), and read a card in the Models tab. The page may request nothing outside the
server. With POOLOPS_API_KEY set, Gradio's login page asks for a key, and the UI works
once logged in with one.

Chromium is Debian's ``/usr/bin/chromium`` driven by pip ``playwright`` (never
``playwright install``); without it the tests are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from live_server import copy_zoo, run_server, server_settings
from PIL import Image

from poolops_models.data import digits

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (CI installs Debian's chromium)")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    zoo = copy_zoo(tmp_path_factory.mktemp("ui-zoo"), ["digits-spp"])
    settings = server_settings(zoo, ui=True, warmup_sizes=[], gradio_temp_dir=tmp_path_factory.mktemp("gradio"))
    with run_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, ui_server):
    """One page on /ui/ for the module (each test opens its tab; a page load costs seconds
    on a busy machine), recording every request that leaves the server."""
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(TIMEOUT_MS)
    outside = []
    server = urlsplit(ui_server).netloc

    def watch(req):
        u = urlsplit(req.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.netloc != server:
            outside.append(req.url)

    pg.on("request", watch)
    pg.goto(ui_server + "/ui/")
    pg.wait_for_selector("#pg-run")
    yield pg
    pg.close()
    assert outside == [], f"the UI requested things outside the server: {outside}"


def choose(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def png(path: Path, a: np.ndarray) -> Path:
    Image.fromarray(a).save(path)
    return path


def test_playground_runs_an_op_on_an_uploaded_image(page, tmp_path):
    img = png(tmp_path / "noise.png", (np.random.default_rng(0).random((40, 30)) * 255).astype(np.uint8))
    page.get_by_role("tab", name="Playground").click()
    page.locator("#pg-image input[type=file]").set_input_files(str(img))
    # uploading switches the input to the image
    page.wait_for_selector("#pg-source input[value=image]:checked")
    page.click("#pg-run")
    status = page.locator("#pg-status")
    status.get_by_text("y: [1, 1, 20, 15], indices: [1, 1, 20, 15]").wait_for()
    assert "grad_input: [1, 1, 40, 30]" in status.inner_text()
    assert re.search(r"provider: \w+ExecutionProvider", status.inner_text())
    for gallery in ("#pg-output", "#pg-grad"):
        im = page.locator(f"{gallery} img").first
        im.wait_for(state="visible")
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=im.element_handle())

    # another op from the registry: its default parameters fill the editor, and it runs
    choose(page, "#pg-op", "spp (pyramid)")
    page.locator("#pg-params").get_by_text('"levels": [1, 2, 4]').wait_for()
    page.click("#pg-run")
    status.get_by_text("y: [1, 21]").wait_for()

    # bad input: a message (and a toast), not a traceback
    page.locator("#pg-source input[value=matrix]").check()
    page.locator("#pg-matrix textarea").fill("1 2\n3 x")
    page.click("#pg-run")
    status.get_by_text("has something that is not a number").wait_for()
    page.locator("[data-testid=toast-body]").first.wait_for()


def test_classify_a_digit_with_digits_spp(page, tmp_path, ui_server):
    _, test_ids = digits.split()
    x, _ = digits.render(test_ids[:1], (48, 40), np.random.default_rng(0))
    img = png(tmp_path / "digit.png", np.round(x[0, 0] * 255).astype(np.uint8))
    expected = httpx.post(
        ui_server + "/v1/models/digits-spp/predict", files=[("files", ("digit.png", img.read_bytes(), "image/png"))]
    ).json()["results"][0]["top"][0]["label"]

    page.get_by_role("tab", name="Classify").click()
    choose(page, "#cls-model", "digits-spp")
    page.locator("#cls-image input[type=file]").set_input_files(str(img))
    page.locator("#cls-image img").first.wait_for()  # the upload has arrived
    page.click("#cls-run")
    page.locator("#cls-status").get_by_text("input size: 48x40 (HxW)").wait_for()
    top = page.locator("#cls-label [data-testid=label-output-value]")
    top.wait_for()
    assert top.inner_text().strip() == expected  # the UI and the REST API agree
    assert "latency" in page.locator("#cls-status").inner_text()


def test_models_tab_shows_the_card(page):
    page.get_by_role("tab", name="Models").click()
    cards = page.locator("#models-cards")
    cards.get_by_role("heading", name="digits-spp").wait_for()
    text = cards.inner_text()
    assert "accuracy_seen_sizes" in text and "padding invariant: yes" in text and "status: available" in text


# ---------------------------------------------------------------- with API keys

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory):
    zoo = copy_zoo(tmp_path_factory.mktemp("locked-zoo"), ["digits-spp"])
    settings = server_settings(zoo, ui=True, warmup_sizes=[], api_key=f"other, {KEY}",
                               gradio_temp_dir=tmp_path_factory.mktemp("locked-gradio"))
    with run_server(settings) as url:
        yield url


def test_login_with_the_key_then_classify(browser, locked_server, tmp_path):
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(TIMEOUT_MS)
    refused = []
    pg.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    try:
        pg.goto(locked_server + "/ui/")
        pg.get_by_text("any user name, the key as password").wait_for()
        assert pg.locator("#pg-run").count() == 0  # nothing of the UI before the login

        user, password = pg.locator("input[type=text]"), pg.locator("input[type=password]")
        user.fill("me")
        password.fill("not-the-key")
        pg.get_by_role("button", name="Login").click()
        pg.get_by_text("Incorrect Credentials").wait_for()

        user.fill("me")  # the failed login emptied the form
        password.fill(KEY)
        pg.get_by_role("button", name="Login").click()
        pg.wait_for_selector("#pg-run")  # the UI, in place of the login page
        refused.clear()

        _, test_ids = digits.split()
        x, _ = digits.render(test_ids[:1], (48, 40), np.random.default_rng(0))
        img = png(tmp_path / "digit.png", np.round(x[0, 0] * 255).astype(np.uint8))
        pg.get_by_role("tab", name="Classify").click()
        choose(pg, "#cls-model", "digits-spp")
        pg.locator("#cls-image input[type=file]").set_input_files(str(img))
        pg.locator("#cls-image img").first.wait_for()
        pg.click("#cls-run")
        pg.locator("#cls-status").get_by_text("input size: 48x40 (HxW)").wait_for()
        assert pg.locator("#cls-label [data-testid=label-output-value]").inner_text().strip()
        assert refused == [], f"requests of the logged-in page were refused: {refused}"
    finally:
        pg.close()

    # the browser's session does not open the UI to anonymous clients
    upload = httpx.post(locked_server + "/ui/gradio_api/upload", files=[("files", ("d.png", img.read_bytes()))])
    join = httpx.post(locked_server + "/ui/gradio_api/queue/join",
                      json={"data": [], "fn_index": 0, "session_hash": "x"})
    info = httpx.get(locked_server + "/ui/gradio_api/info")
    assert [r.status_code for r in (upload, join, info)] == [401, 401, 401]
