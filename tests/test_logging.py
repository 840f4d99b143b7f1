"""Every line of ours names its venue and connection in the text, so an application
that embeds the library and formats lines its own way (``{message}`` only) still
knows where each came from."""

from __future__ import annotations

import trio
from loguru import logger

from trio_books import load_config_text
from trio_books.model import BookState
from trio_books.runner import build_store, run_venues
from trio_books.testing import FakeBinanceSpot


async def test_an_applications_own_sink_sees_the_venue_and_connection_in_every_line(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.05, backoff_cap=0.1))
    store = build_store(cfg)
    lines: list[str] = []
    logger.enable("trio_books")
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG", format="{message}",
                      filter=lambda r: r["name"].startswith("trio_books"))
    try:
        async with trio.open_nursery() as inner:
            inner.start_soon(run_venues, cfg, store)
            with trio.fail_after(10):
                while not all(e.state is BookState.LIVE for e in store.entries()):
                    await store.wait_change()
            fake.skip_next_update("BTCUSDT")
            with trio.fail_after(10):
                while not any("not live (gap)" in line for line in lines):
                    await store.wait_change()
            inner.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    assert any(line.startswith("binance_spot conn 0: BTCUSDT live (") for line in lines), lines
    assert any(line.startswith("binance_spot conn 0: BTCUSDT not live (gap)") for line in lines), lines
    assert all(line.startswith("binance_spot conn 0: ") for line in lines), lines
