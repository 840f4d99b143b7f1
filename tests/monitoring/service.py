"""The service against two fakes in process (a small ``trio-books demo`` whose fakes
the test can reach to inject faults)."""

from __future__ import annotations

import trio

from trio_books import load_config_text
from trio_books.model import BookState
from trio_books.runner import build_store, run_venues
from trio_books.serve.app import build_app, serve_http
from trio_books.testing import FakeBinanceSpot, FakeOkxSpot

BOOKS = {"binance_spot": ["BTCUSDT", "ETHUSDT"], "okx_spot": ["BTC-USDT", "ETH-USDT"]}


async def start_demo(nursery: trio.Nursery, token: str = "") -> tuple[object, str, dict[str, object]]:
    """``(store, base_url, fakes by venue)`` once every book is live."""
    fakes = {"binance_spot": await nursery.start(FakeBinanceSpot(BOOKS["binance_spot"], rate=20).serve),
             "okx_spot": await nursery.start(FakeOkxSpot(BOOKS["okx_spot"], rate=20).serve)}
    service = f'[service]\nauth_token = "{token}"\n' if token else ""
    cfg = load_config_text(service + "".join(f.config_toml(backoff_base=0.1, backoff_cap=0.2) for f in fakes.values()))
    store = build_store(cfg)
    binds = await nursery.start(serve_http, build_app(store, service=cfg.service), "127.0.0.1", 0)
    nursery.start_soon(run_venues, cfg, store)
    with trio.fail_after(20):
        while not all(e.state is BookState.LIVE for e in store.entries()):
            await store.wait_change()
    return store, binds[0], fakes
