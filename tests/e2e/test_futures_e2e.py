"""``trio-books run`` as a real subprocess against the Binance USD-M and AsterDEX
futures fakes, read over HTTP, through a sequence gap (that book alone is
resynced, on the open connection) and a dropped connection."""

from __future__ import annotations

import pytest
import trio

from trio_books.testing import FakeAsterdexFutures, FakeBinanceFutures
from trio_books.testing.harness import ServiceProcess, converge

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("fake_cls", [FakeBinanceFutures, FakeAsterdexFutures], ids=["binance_futures", "asterdex_futures"])
async def test_service_serves_true_book_after_gap_and_drop(nursery, fake_cls):
    fake = await nursery.start(fake_cls(["BTCUSDT", "ETHUSDT"], rate=40).serve)
    venue = fake.venue_id
    config = '[service]\nlog_level = "INFO"\n' + fake.config_toml(depth=500, backoff_base=0.2, backoff_cap=0.5)
    svc = await ServiceProcess(config).start(nursery)
    try:
        with trio.fail_after(14):
            for s in fake.symbols:
                await converge(svc.book_top(venue, s, 50), fake, s, n=50, timeout=10)
            health = (await svc.get("/health")).json()
            assert health["venues"][venue]["connected"] is True and health["venues"][venue]["failures"] == {}

            fake.skip_next_update("ETHUSDT")  # the pu chain breaks: ETHUSDT alone is resynced
            while not (await svc.get("/health")).json()["venues"][venue]["book_resyncs"].get("gap"):
                await trio.sleep(0.1)
            for s in fake.symbols:
                await converge(svc.book_top(venue, s, 50), fake, s, n=50, timeout=5)

            await fake.drop()  # the venue hangs up
            health = await svc.wait_failures(venue, "close", timeout=5)
            for s in fake.symbols:
                await converge(svc.book_top(venue, s, 50), fake, s, n=50, timeout=5)

            health = (await svc.get("/health")).json()["venues"][venue]
            assert health["failures"] == {"close": 1} and health["reconnects"] == 1
            assert health["book_resyncs"] == {"gap": 1} and health["resyncs"] == 1
            assert fake.connections_accepted == 2
            assert {p for _, p in fake.rest_log} == {f"{fake.depth_path}?symbol={s}&limit=500" for s in fake.symbols}

            # exact strings, as the venue wrote them
            book = (await svc.get(f"/books/{venue}/BTCUSDT?depth=5")).json()
            assert book["bids"][0] == list(fake.top("BTCUSDT", 1)[0][0])
            assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
    log = svc.log()
    assert "Traceback" not in log
    assert "trio-books started" in log and "trio-books stopped" in log
