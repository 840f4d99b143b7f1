"""``trio-books run`` as a real subprocess against the Bybit spot and linear fakes, read over HTTP."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeBybitFutures, FakeBybitSpot
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


async def wait_failures(svc: ServiceProcess, venue: str, reason: str, at_least: int = 1, timeout: float = 10.0) -> dict:
    return await svc.wait_failures(venue, reason, at_least, timeout)


async def wait_book_resync(svc: ServiceProcess, venue: str, reason: str, timeout: float = 10.0) -> dict:
    """Poll ``/health`` until ``venue`` resynced a single book for ``reason``."""
    with trio.fail_after(timeout):
        while True:
            health = (await svc.get("/health")).json()
            if health["venues"][venue]["book_resyncs"].get(reason, 0) >= 1:
                return health
            await trio.sleep(0.1)


async def test_service_serves_true_books_through_a_gap_and_a_drop(nursery):
    spot = await nursery.start(FakeBybitSpot(SYMBOLS, rate=40).serve)
    linear = await nursery.start(FakeBybitFutures(SYMBOLS, rate=40, seed=2).serve)
    config = ('[service]\nlog_level = "INFO"\n' + spot.config_toml(depth=200, backoff_base=0.2, backoff_cap=0.5)
              + linear.config_toml(depth=50, backoff_base=0.2, backoff_cap=0.5))
    svc = await ServiceProcess(config).start(nursery)
    try:
        for fake in (spot, linear):
            for s in SYMBOLS:
                await converge(svc.book_top(fake.venue_id, s), fake, s, timeout=10)

        spot.skip_next_update("ETHUSDT")
        linear.skip_next_update("BTCUSDT")
        await wait_book_resync(svc, "bybit_spot", "gap")  # that book alone, on the same connection
        await wait_book_resync(svc, "bybit_futures", "gap")
        await converge(svc.book_top("bybit_spot", "ETHUSDT"), spot, "ETHUSDT", timeout=10)
        await converge(svc.book_top("bybit_futures", "BTCUSDT", 50), linear, "BTCUSDT", n=50, timeout=10)

        await spot.drop()
        await linear.drop()
        await wait_failures(svc, "bybit_spot", "close")
        await wait_failures(svc, "bybit_futures", "close")
        for fake in (spot, linear):
            for s in SYMBOLS:
                await converge(svc.book_top(fake.venue_id, s), fake, s, timeout=10)

        health = (await svc.get("/health")).json()
        for venue in ("bybit_spot", "bybit_futures"):
            v = health["venues"][venue]
            assert v["connected"] is True and v["reconnects"] == 1
            assert v["failures"] == {"close": 1} and v["book_resyncs"] == {"gap": 1}
        # exact strings, as the venue wrote them (linear keeps its zeros), and the venue's u
        linear.paused = True
        await converge(svc.book_top("bybit_futures", "BTCUSDT"), linear, "BTCUSDT", timeout=10)
        book = (await svc.get("/books/bybit_futures/BTCUSDT?depth=5")).json()
        assert book["bids"][0] == list(linear.top("BTCUSDT", 1)[0][0]) and book["update_id"] == linear._u[("BTCUSDT", 50)]
        assert all(isinstance(p, str) and isinstance(q, str) and len(p.split(".")[1]) == 2 for p, q in book["bids"] + book["asks"])
        assert (await svc.get("/books/bybit_spot/NOPE")).status_code == 404
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
    assert "trio-books started" in log and "trio-books stopped" in log
