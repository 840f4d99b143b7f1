"""``trio-books run`` as a real subprocess against the Binance Spot fake, read over HTTP."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "binance_spot"


async def wait_failures(svc: ServiceProcess, reason: str, at_least: int = 1, timeout: float = 15.0) -> dict:
    return await svc.wait_failures(VENUE, reason, at_least, timeout)


async def wait_book_resyncs(svc: ServiceProcess, reason: str, timeout: float = 15.0) -> dict:
    """Poll ``/health`` until some book of the venue was resynced alone for ``reason``."""
    with trio.fail_after(timeout):
        while True:
            health = (await svc.get("/health")).json()
            if health["venues"][VENUE]["book_resyncs"].get(reason):
                return health
            await trio.sleep(0.1)


async def test_service_serves_true_book_through_faults(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=40).serve)
    config = "[service]\nlog_level = \"INFO\"\n" + fake.config_toml(depth=200, backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s), fake, s, timeout=15)
        health = (await svc.get("/health")).json()
        assert health["status"] == "ok" and health["venues"][VENUE]["connected"] is True

        fake.skip_next_update("ETHUSDT")  # ETHUSDT alone is rebuilt, on the same connection
        health = await wait_book_resyncs(svc, "gap")
        assert health["venues"][VENUE]["failures"] == {} and health["venues"][VENUE]["reconnects"] == 0
        await converge(svc.book_top(VENUE, "ETHUSDT"), fake, "ETHUSDT", timeout=15)
        books = (await svc.get("/venues")).json()["venues"][VENUE]["books"]
        assert books["ETHUSDT"] == {"state": "live", "resyncs": {"gap": 1}} and books["BTCUSDT"]["resyncs"] == {}
        assert fake.connections_accepted == 1

        await fake.drop()
        await wait_failures(svc, "close")
        await converge(svc.book_top(VENUE, "BTCUSDT"), fake, "BTCUSDT", timeout=15)

        fake.send_malformed()
        health = await wait_failures(svc, "bad_frame")
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s), fake, s, timeout=15)
        health = (await svc.get("/health")).json()["venues"][VENUE]
        assert health["reconnects"] == 2 and health["failures"] == {"close": 1, "bad_frame": 1}
        assert health["resyncs"] == 2 and health["book_resyncs"] == {"gap": 1}  # the gap (one book) and the bad frame

        # exact strings, as the venue wrote them
        book = (await svc.get("/books/binance_spot/BTCUSDT?depth=5")).json()
        assert book["bids"][0] == list(fake.top("BTCUSDT", 1)[0][0])
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
        assert (await svc.get("/books/binance_spot/NOPE")).status_code == 404
        assert (await svc.get("/books/nope/BTCUSDT")).status_code == 404
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
    assert "trio-books started" in log and "trio-books stopped" in log
