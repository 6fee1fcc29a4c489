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

from poolops.examples import COMPARE_EXAMPLES, OP_EXAMPLES, SPP_EXAMPLES
from poolops_models import size_policy
from poolops_models.cards import load_registry
from poolops_models.data import digits
from poolops_models.recipes import zoo_dir
from poolops_service.ui.classify import example_images as classify_examples


def fed_size(h: int, w: int) -> str:
    """What digits-spp's card size policy makes of an h x w upload, as the status says it."""
    card = load_registry(zoo_dir())["digits-spp"].card
    h2, w2 = size_policy.target_size(h, w, card.size_policy, card.input)
    return f"input size: {h2}x{w2} (HxW)"

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
    page.locator("#cls-status").get_by_text(fed_size(48, 40)).wait_for()
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
        pg.locator("#cls-status").get_by_text(fed_size(48, 40)).wait_for()
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


# ---------------------------------------------------------------- the sources' examples, one click each


def _text(page, selector: str) -> str:
    return " ".join(page.locator(selector).inner_text().split())


def _wait_text(page, selector: str, pattern: str) -> str:
    """The element's text (whitespace collapsed) once it matches ``pattern``."""
    page.wait_for_function(
        "([sel, pat]) => { const el = document.querySelector(sel);"
        " return el && new RegExp(pat).test(el.innerText.replace(/\\s+/g, ' ')); }",
        arg=[selector, pattern],
    )
    return _text(page, selector)


def _frame(page, selector: str) -> dict[str, list[str]]:
    """A Dataframe's rows (its grid cells), keyed by their first cell."""
    rows = page.locator(selector).evaluate(
        "el => { const rows = {}; for (const c of el.querySelectorAll('[role=gridcell][data-row]')) {"
        " (rows[c.dataset.row] ||= [])[+c.dataset.col] = c.innerText.trim(); } return Object.values(rows); }"
    )
    return {r[0]: r for r in rows}


def _cells(values) -> str:
    """A plane's rows as the numbers tables read: 'h=0 0 3 h=1 0 0'."""
    return " ".join(f"{{r}}={i} " + " ".join(f"{v:g}" for v in row) for i, row in enumerate(values))


def test_playground_examples_show_the_sources_numbers(page):
    page.get_by_role("tab", name="Playground").click()
    for ex in OP_EXAMPLES:
        page.click(f"#ex-{ex.key}")
        _wait_text(page, "#pg-example", re.escape(ex.title))
        status = _wait_text(page, "#pg-status", re.escape(f"**{ex.op}**".strip("*")) + " on matrix")
        numbers = _text(page, "#pg-numbers")
        if ex.y is not None:
            assert _cells(ex.y).format(r="i") in numbers, numbers
        if ex.grad_x is not None:
            assert "grad_input" in numbers and _cells(ex.grad_x).format(r="h") in numbers.split("grad_input")[1]
        if ex.y_shape is not None:
            assert f"y: {list(ex.y_shape)}" in status
        if ex.probabilities is not None:
            assert ", ".join(f"{p:g}" for p in ex.probabilities[0]) in _text(page, "#pg-stochastic")
        if ex.samples_from is not None:
            train = _text(page, "#pg-stochastic").split("Train mode")[1]
            samples = re.findall(r"(?:^| )(\d) (\d)(?= |$)", train.split("y(0, 0)")[1])
            assert len(samples) == 8 and {int(v) for _, v in samples} <= set(ex.samples_from), train
        if ex.op == "max":  # the windows view: output cell (0, 0), its window and argmax
            assert "argmax x[0, 1] = 3" in _text(page, "#pg-cell")
            page.locator("#pg-windows img").first.wait_for(state="visible")
            page.locator("#pg-backward img").first.wait_for(state="visible")


def test_choosing_an_output_cell_shows_its_window_and_argmax(page):
    page.get_by_role("tab", name="Playground").click()
    choose(page, "#pg-op", "max (window)")
    page.locator("#pg-source input[value=matrix]").check()
    page.locator("#pg-matrix textarea").fill("1 3 0 0\n2 2 0 9")
    page.click("#pg-run")
    _wait_text(page, "#pg-cell", r"argmax x\[0, 1\] = 3")
    cell = page.locator("#pg-y-table [data-testid=cell-0-2]")  # row i=0, column j=1 (after the row label)
    assert cell.inner_text().strip() == "9"
    cell.click()
    _wait_text(page, "#pg-cell", r"y\[0, 0, 0, 1\] = 9.*columns 2-3.*argmax x\[1, 3\] = 9")


def test_compare_examples_show_the_sources_numbers(page):
    page.get_by_role("tab", name="Compare").click()
    for ex in COMPARE_EXAMPLES:
        page.click(f"#cex-{ex.key}")
        _wait_text(page, "#cmp-example", re.escape(ex.title))
        _wait_text(page, "#cmp-status", f"{len(ex.ops)} of {len(ex.ops)} ops")
        rows = _frame(page, "#cmp-summary")
        for op, want in ex.expect.items():
            if "y_shape" in want:
                assert rows[op][2] == str(list(want["y_shape"])), rows[op]
            if "y" in want:
                assert rows[op][3] == "; ".join(" ".join(f"{v:g}" for v in r) for r in want["y"]), rows[op]


def test_spp_examples_same_length_at_both_sizes(page):
    page.get_by_role("tab", name="SPP explorer").click()
    for ex in SPP_EXAMPLES:
        page.click(f"#sex-{ex.key}")
        _wait_text(page, "#spp-example", re.escape(ex.title))
        _wait_text(page, "#spp-status", f"Vector length {ex.length} ")
        table = _frame(page, "#spp-sizes-table")
        for h, w in ex.sizes:
            assert table[f"{h}x{w}"][1:] == [f"[1, {ex.length}]", str(ex.length)], table
        assert f"Level 4: 4x4 bins, channel 0 of {ex.channels}" in _text(page, "#spp-bins")
        page.locator("#spp-gallery img").first.wait_for(state="visible")


def test_classify_example_images(page, ui_server):
    page.get_by_role("tab", name="Classify").click()
    digit = next(e for e in classify_examples() if e.key.startswith("digit-"))
    expected = httpx.post(
        ui_server + "/v1/models/digits-spp/predict",
        files=[("files", (digit.path.name, digit.path.read_bytes(), "image/png"))],
    ).json()["results"][0]
    h, w = digit.key.rsplit("-", 1)[1].split("x")
    page.click(f"#cls-ex-{digit.key}")
    status = _wait_text(page, "#cls-status", f"original size {h}x{w}.*Accuracy by size, from the model's card")
    assert f"size policy applied: {expected['size_policy']}; original size {h}x{w}" in status
    assert "(this image)" in status
    assert page.locator("#cls-label [data-testid=label-output-value]").inner_text().strip() == expected["top"][0]["label"]


# ---------------------------------------------------------------- API docs with no internet


def test_api_docs_load_with_every_outside_request_blocked(browser, ui_server):
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(TIMEOUT_MS)
    blocked, local = [], []

    def route(r):
        host = urlsplit(r.request.url).hostname
        if host == "127.0.0.1":
            local.append(r.request.url)
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    try:
        pg.goto(ui_server + "/docs")
        pg.locator(".opblock-summary-path", has_text="/v1/ops/{name}").first.wait_for()
        assert pg.locator(".opblock").count() >= 10
        assert blocked == [], f"/docs asked for outside files: {blocked}"
        assert any("/docs-assets/swagger-ui-bundle.js" in u for u in local)
        # ReDoc works too; its footer's "powered by" logo is the one outside file it asks for
        pg.goto(ui_server + "/redoc")
        pg.get_by_text("/v1/models/{name}/predict").first.wait_for()
        assert [u for u in blocked if not u.endswith("/logo-mini.svg")] == [], blocked
    finally:
        pg.close()
