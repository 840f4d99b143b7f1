"""Binance Spot against its fake over real loopback sockets, in process."""

from __future__ import annotations

import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import converge, view_top

VENUE = "binance_spot"


async def start(nursery, **kw):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50, **kw).serve)
    return fake


async def test_books_go_live_and_equal_truth(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
        assert fake.snapshot_requests >= 2


async def test_gap_resyncs_to_truth(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.skip_next_update("BTCUSDT")
        with trio.fail_after(10):
            while books.statistics()[VENUE].failures.get("gap", 0) == 0:
                await trio.sleep(0.02)
            await books.wait_live(VENUE)
        await converge(view_top(books, VENUE, "BTCUSDT"), fake, "BTCUSDT")
        stats = books.statistics()[VENUE]
        assert stats.resyncs == 1 and stats.reconnects == 1


async def test_drop_and_malformed_frame_recover(nursery):
    fake = await start(nursery)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        with trio.fail_after(10):
            while books.statistics()[VENUE].failures.get("close", 0) == 0:
                await trio.sleep(0.02)
            await books.wait_live(VENUE)
        fake.send_malformed()
        with trio.fail_after(10):
            while books.statistics()[VENUE].failures.get("bad_frame", 0) == 0:
                await trio.sleep(0.02)
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
        assert fake.connections_accepted == 3


async def test_rest_429_honours_retry_after(nursery):
    fake = await start(nursery)
    fake.rest_fail(429, count=1, retry_after=2)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(15):
            while books.statistics()[VENUE].failures.get("snapshot", 0) == 0:
                await trio.sleep(0.02)
            failed_at = trio.current_time()
            await books.wait_live(VENUE)
        assert trio.current_time() - failed_at >= 1.9  # waited out Retry-After, not the 0.1 s backoff
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)


async def test_silence_trips_watchdog_under_mock_clock(nursery, pacer, autojump_clock):
    fake = await start(nursery)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        fake.silence()
        silenced = trio.current_time()
        with trio.fail_after(60):
            await books.wait_state(VENUE, "BTCUSDT", BookState.STALE)
        waited = trio.current_time() - silenced
        assert 14.0 <= waited <= 16.0  # the 15 s watchdog, in virtual time
        assert books.statistics()[VENUE].failures["heartbeat"] == 1
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)


async def test_trio_websocket_transport_also_works(nursery):
    fake = await start(nursery)
    cfg = load_config_text('[service]\ntransport = "trio-websocket"\n' + fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        with trio.fail_after(10):
            while books.statistics()[VENUE].failures.get("close", 0) == 0:
                await trio.sleep(0.02)
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
