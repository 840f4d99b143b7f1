"""``trio-books run`` as a real subprocess against the OKX spot fake, read over HTTP."""

from __future__ import annotations

import pytest

from trio_books.testing import FakeOkxSpot
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "okx_spot"


async def wait_failures(svc: ServiceProcess, reason: str, at_least: int = 1, timeout: float = 10.0) -> dict:
    return await svc.wait_failures(VENUE, reason, at_least, timeout)


async def test_service_serves_true_book_after_gap_and_checksum_corruption(nursery):
    fake = await nursery.start(FakeOkxSpot(["BTC-USDT", "ETH-USDT"], rate=40).serve)
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s), fake, s, timeout=10)

        fake.skip_next_update("ETH-USDT")
        await wait_failures(svc, "gap")
        await converge(svc.book_top(VENUE, "ETH-USDT"), fake, "ETH-USDT", timeout=10)

        fake.corrupt_checksum_next("BTC-USDT")
        health = await wait_failures(svc, "checksum")
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)
        health = (await svc.get("/health")).json()
        venue = health["venues"][VENUE]
        assert venue["failures"] == {"gap": 1, "checksum": 1}
        assert venue["reconnects"] == 2 and venue["connected"] is True

        # exact strings, as the venue wrote them ("1000.1", never "1000.10")
        book = (await svc.get("/books/okx_spot/BTC-USDT?depth=5")).json()
        assert book["bids"][0] == list(fake.top("BTC-USDT", 1)[0][0])
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
