"""``trio-books run`` as a real subprocess against the OKX spot fake, read over HTTP."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeOkxSpot
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "okx_spot"


async def wait_book_resyncs(svc: ServiceProcess, reason: str, timeout: float = 10.0) -> dict:
    """Poll ``/health`` until a single book was resynced for ``reason``."""
    with trio.fail_after(timeout):
        while True:
            health = (await svc.get("/health")).json()
            if health["venues"][VENUE]["book_resyncs"].get(reason, 0) >= 1:
                return health
            await trio.sleep(0.1)


async def test_service_serves_true_book_after_gap_and_checksum_corruption(nursery):
    fake = await nursery.start(FakeOkxSpot(["BTC-USDT", "ETH-USDT"], rate=40).serve)
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s), fake, s, timeout=10)

        fake.skip_next_update("ETH-USDT")
        await wait_book_resyncs(svc, "gap")  # that book alone, on the same connection
        await converge(svc.book_top(VENUE, "ETH-USDT"), fake, "ETH-USDT", timeout=10)

        fake.corrupt_checksum_next("BTC-USDT")
        await wait_book_resyncs(svc, "checksum")
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)
        health = (await svc.get("/health")).json()
        venue = health["venues"][VENUE]
        assert venue["book_resyncs"] == {"gap": 1, "checksum": 1} and venue["failures"] == {}
        assert venue["reconnects"] == 0 and venue["connected"] is True and fake.connections_accepted == 1
        books = (await svc.get("/venues")).json()["venues"][VENUE]["books"]
        assert books["ETH-USDT"]["resyncs"] == {"gap": 1} and books["BTC-USDT"]["resyncs"] == {"checksum": 1}

        # exact strings, as the venue wrote them ("1000.1", never "1000.10")
        book = (await svc.get("/books/okx_spot/BTC-USDT?depth=5")).json()
        assert book["bids"][0] == list(fake.top("BTC-USDT", 1)[0][0])
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
