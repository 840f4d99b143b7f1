"""``trio-books run`` as a real subprocess against the Kraken v2 fake, read over HTTP."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeKraken
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "kraken_spot"


async def wait_failures(svc: ServiceProcess, reason: str, at_least: int = 1, timeout: float = 10.0) -> dict:
    return await svc.wait_failures(VENUE, reason, at_least, timeout)


async def wait_book_resyncs(svc: ServiceProcess, reason: str, timeout: float = 10.0) -> dict:
    """Poll ``/health`` until a book of the venue was resynced alone for ``reason``."""
    with trio.fail_after(timeout):
        while True:
            health = (await svc.get("/health")).json()
            if health["venues"][VENUE]["book_resyncs"].get(reason, 0):
                return health
            await trio.sleep(0.1)


async def test_service_serves_true_kraken_books_through_faults(nursery):
    fake = await nursery.start(FakeKraken(["BTC/USD", "ETH/USD"], rate=40, trim_zeros=True).serve)
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(depth=25, backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 25), fake, s, n=25, timeout=10)

        fake.corrupt_checksum_next("ETH/USD")  # that book alone is resynced on the live connection
        health = await wait_book_resyncs(svc, "checksum")
        assert health["venues"][VENUE]["failures"] == {} and fake.connections_accepted == 1
        books = (await svc.get("/venues")).json()["venues"][VENUE]["books"]
        assert books["ETH/USD"]["resyncs"] == {"checksum": 1} and books["BTC/USD"]["resyncs"] == {}
        await converge(svc.book_top(VENUE, "ETH/USD", 25), fake, "ETH/USD", n=25, timeout=10)

        await fake.drop()
        await wait_failures(svc, "close")
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 25), fake, s, n=25, timeout=10)

        health = (await svc.get("/health")).json()
        venue = health["venues"][VENUE]
        assert venue["connected"] is True and venue["failures"] == {"close": 1} and venue["book_resyncs"] == {"checksum": 1}
        assert venue["resyncs"] == 1 and fake.connections_accepted == 2
        # '/' in the symbol, URL-quoted; exact strings with the pair's decimals although the wire trimmed them
        fake.paused = True
        await converge(svc.book_top(VENUE, "BTC/USD", 25), fake, "BTC/USD", n=25, timeout=10)
        book = (await svc.get("/books/kraken_spot/BTC%2FUSD?depth=5")).json()
        want_bids, want_asks = fake.top("BTC/USD", 5)
        assert book["symbol"] == "BTC/USD" and book["state"] == "live"
        assert book["bids"] == [list(x) for x in want_bids] and book["asks"] == [list(x) for x in want_asks]
        assert (await svc.get("/books/kraken_spot/DOGE%2FUSD")).status_code == 404
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log and "trio-books stopped" in log
