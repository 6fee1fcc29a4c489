"""Screenshots of each UI tab for the README and docs/ (docs/ui/TAB.png), taken in Debian's
headless Chromium from a real server (the committed models), each tab after one of its
examples ran.

    .venv/bin/python tools/ui_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))

from live_server import copy_zoo, run_server, server_settings  # noqa: E402

OUT = ROOT / "docs" / "ui"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# (tab, file, the example button to click, text that says it is done, what to scroll to the top)
TABS = [
    ("Playground", "playground", "#ex-max-2x2", ("#pg-cell", "argmax"), "#pg-example"),
    ("Compare", "compare", "#cex-max-avg-2x2", ("#cmp-status", "3 of 3 ops"), "#cmp-example"),
    ("SPP explorer", "spp", "#sex-spp-photo", ("#spp-status", "Vector length 63"), "#spp-example"),
    ("Classify", "classify", "#cls-ex-digit-9-64x48", ("#cls-status", "Accuracy by size"), None),
    ("Models", "models", None, ("#models-cards", "digits-spp"), None),
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        zoo = copy_zoo(Path(tmp) / "zoo", ["digits-spp", "layout-spp"])
        settings = server_settings(zoo, ui=True, warmup_sizes=[], gradio_temp_dir=Path(tmp) / "gradio")
        with run_server(settings) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url + "/ui/")
            page.wait_for_selector("#pg-run")
            for tab, name, button, (selector, text), top in TABS:
                page.get_by_role("tab", name=tab).click()
                if button:
                    page.click(button)
                page.locator(selector).get_by_text(text).first.wait_for()
                page.wait_for_timeout(800)  # images decoded and laid out
                if top:
                    page.locator(top).evaluate("el => el.scrollIntoView({block: 'start'})")
                else:
                    page.evaluate("window.scrollTo(0, 0)")
                page.wait_for_timeout(300)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                print(OUT / f"{name}.png")
            browser.close()


if __name__ == "__main__":
    main()
