"""``trio-books run`` as a real subprocess against the BingX spot fake, read over HTTP."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeBingx
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "bingx_spot"


async def wait_failures(svc: ServiceProcess, reason: str, at_least: int = 1, timeout: float = 10.0) -> dict:
    return await svc.wait_failures(VENUE, reason, at_least, timeout)


async def test_service_serves_true_book_through_drop_and_malformed_frame(nursery):
    # pings every 0.5 s (the venue: 5 s) so the subprocess answers some within the test
    fake = await nursery.start(FakeBingx(["BTC-USDT", "ETH-USDT"], rate=10, ping_interval=0.5).serve)
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(depth=50, backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)
        health = (await svc.get("/health")).json()
        assert health["venues"][VENUE]["connected"] is True

        await fake.drop()
        await wait_failures(svc, "close")
        await converge(svc.book_top(VENUE, "BTC-USDT"), fake, "BTC-USDT", timeout=10)

        fake.send_malformed()  # a truncated gzip member
        await wait_failures(svc, "bad_frame")
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)
        venue = (await svc.get("/health")).json()["venues"][VENUE]
        assert venue["reconnects"] >= 2 and venue["failures"].get("rejected", 0) == 0

        # best ask first although the venue sends asks worst-first; exact strings
        book = (await svc.get("/books/bingx_spot/BTC-USDT?depth=5")).json()
        bids, asks = fake.top("BTC-USDT", 5)
        assert book["asks"] == [list(x) for x in asks] and book["bids"] == [list(x) for x in bids]
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])

        with trio.fail_after(5):  # the service echoes the JSON pings, so the fake keeps the connection
            while len(fake.pongs) < 3:
                await trio.sleep(0.1)
        assert (await svc.get("/health")).json()["venues"][VENUE]["failures"].get("heartbeat", 0) == 0
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
