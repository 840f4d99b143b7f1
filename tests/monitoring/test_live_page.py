"""The live page at ``/``: served by the service, and tested in a real headless
Chromium (Debian's package) driven by Playwright's Python client: the table fills,
a book's ladder updates over /ws, a book forced stale shows stale. The screenshot
is kept in build/artifacts/ (live-page.png, live-page-stale.png)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import trio

from trio_books.serve.page import render_index

from .service import BOOKS, start_demo

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKEN = "s3cret-Token_1"  # the service compares ?token= undecoded: tokens for the page are URL-safe
DECIMAL = re.compile(r"^\d+(\.\d+)?$")


def test_index_forwards_the_token_to_its_assets():
    template = '<link href="/static/live.css{{query}}"><script src="/static/live.js{{query}}"></script>'
    assert render_index(template, None) == '<link href="/static/live.css"><script src="/static/live.js"></script>'
    assert render_index(template, 'a"b<c') == '<link href="/static/live.css?token=a%22b%3Cc"><script src="/static/live.js?token=a%22b%3Cc"></script>'


async def test_page_and_assets_are_served(nursery):
    _, base, _ = await start_demo(nursery)
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/live.js">' in page.text
        js = await http.get("/static/live.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript") and "new WebSocket" in js.text
        assert (await http.get("/static/live.css")).headers["content-type"].startswith("text/css")
        missing = await http.get("/static/../app.py")
        assert missing.status_code == 404 and missing.json() == {"error": "not found"}


def drive_browser(url: str, stale_one: object) -> list[str]:
    """In a worker thread: the page in Chromium, step by step; returns the ladder's prices."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=ARGS, headless=True,
                                                        viewport={"width": 1280, "height": 800})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(url)
            n_books = sum(len(s) for s in BOOKS.values())
            page.wait_for_function(f"document.querySelectorAll('tr.book[data-state=live]').length === {n_books}")
            assert page.inner_text("#status") == "ok"
            for venue in BOOKS:
                assert page.locator(f'tr.venue[data-venue="{venue}"]').count() == 1
            page.click('tr[data-book="binance_spot/BTCUSDT"]')
            page.wait_for_function("document.querySelectorAll('#ladder tbody tr').length >= 20")
            first = page.get_attribute("#book-pane", "data-version")
            page.wait_for_function(f"document.getElementById('book-pane').dataset.version !== '{first}'")
            assert page.inner_text("#book-state") == "live"
            prices = page.locator("#ladder tbody td:nth-child(2)").all_inner_texts()
            page.screenshot(path=str(ARTIFACTS / "live-page.png"), full_page=True)
            trio.from_thread.run_sync(stale_one)
            page.wait_for_function("document.querySelector('tr[data-book=\"binance_spot/BTCUSDT\"]').dataset.state === 'stale'")
            page.wait_for_function("document.getElementById('book-pane').dataset.state === 'stale'")
            assert page.locator('tr[data-book="binance_spot/ETHUSDT"]').get_attribute("data-state") == "live"
            assert "gap" in page.inner_text('tr[data-book="binance_spot/BTCUSDT"] td.error')
            page.screenshot(path=str(ARTIFACTS / "live-page-stale.png"), full_page=True)
            assert not errors, errors
            return prices
        finally:
            browser.close()


async def test_live_page_in_chromium(nursery):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not available (Debian package 'chromium'; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[browser]'; .ci/run does)")
    store, base, fakes = await start_demo(nursery, token=TOKEN)
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/")).status_code == 401  # the page, too, needs the token when one is set
    binance = fakes["binance_spot"]

    def stale_one() -> None:
        binance.snapshot_delay = 60.0  # its rebuild waits: the book stays stale while the page looks
        binance.skip_next_update("BTCUSDT")

    url = f"{base}/?" + str(httpx.QueryParams({"token": TOKEN}))
    prices = await trio.to_thread.run_sync(drive_browser, url, stale_one)
    assert len(prices) >= 20 and all(DECIMAL.match(p) for p in prices), prices
    for shot in ("live-page.png", "live-page-stale.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000
