"""``trio-books run`` as a real subprocess against the Coinbase fake, read over HTTP."""

from __future__ import annotations

import pytest

from trio_books.testing import FakeCoinbase
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e
VENUE = "coinbase_spot"


async def wait_failures(svc: ServiceProcess, reason: str, at_least: int = 1, timeout: float = 10.0) -> dict:
    return await svc.wait_failures(VENUE, reason, at_least, timeout)


async def test_service_serves_true_book_after_a_gap_and_a_drop(nursery):
    fake = await nursery.start(FakeCoinbase(["BTC-USD", "ETH-USD"], rate=40).serve)
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)
        health = (await svc.get("/health")).json()
        assert health["status"] == "ok" and health["venues"][VENUE]["connected"] is True

        fake.skip_next_update("BTC-USD")  # one sequence_num never arrives
        health = await wait_failures(svc, "gap")
        assert "sequence_num" in health["venues"][VENUE]["last_error"]
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)

        await fake.drop()
        await wait_failures(svc, "close")
        fake.paused = True  # hold the truth still for the exact comparison below
        for s in fake.symbols:
            await converge(svc.book_top(VENUE, s, 50), fake, s, n=50, timeout=10)

        health = (await svc.get("/health")).json()
        assert health["venues"][VENUE]["reconnects"] >= 2
        # exact strings, as the venue wrote them (no trailing zeros added, no float)
        book = (await svc.get("/books/coinbase_spot/ETH-USD?depth=5")).json()
        assert [tuple(x) for x in book["bids"]] == fake.top("ETH-USD", 5)[0]
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
        assert fake.connections_accepted == 3
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
