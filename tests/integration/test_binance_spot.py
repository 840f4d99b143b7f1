"""Binance Spot against its fake over real loopback sockets, in process."""

from __future__ import annotations

import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import LiveWatch, converge, resyncs_alone, view_top

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


def requests_for(fake, symbol: str) -> list[float]:
    """When the fake's REST depth endpoint was asked for ``symbol``."""
    return [t for t, path in fake.rest_log if f"symbol={symbol}&" in path]


async def test_gap_resyncs_that_book_alone(nursery, pacer, autojump_clock):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        entry = books.store.entry(VENUE, "BTCUSDT")
        fetched = len(requests_for(fake, "BTCUSDT"))
        watch, back = await resyncs_alone(books, fake, VENUE, "BTCUSDT", lambda: fake.skip_next_update("BTCUSDT"))
        assert back < 1.0  # one snapshot away, not a reconnect
        assert watch.steps > 20 and watch.not_live == [], watch.not_live[:5]
        assert len(requests_for(fake, "BTCUSDT")) == fetched + 1  # exactly one snapshot refetched
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        assert stats.book_resyncs == {"gap": 1} and stats.resyncs == 1 and dict(entry.resyncs) == {"gap": 1}


async def test_a_snapshot_older_than_the_buffered_stream_is_fetched_again(nursery, pacer, autojump_clock):
    """Spot step 4: a resync's snapshot answered after more events were buffered
    (``lastUpdateId`` < the first buffered ``U``) is fetched again, for that book only."""
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        fetched = len(requests_for(fake, "BTCUSDT"))
        with LiveWatch(books.store, VENUE, ["ETHUSDT"]) as watch:
            fake.late_snapshot("BTCUSDT", 0.2)  # ten events of the stream go by meanwhile
            fake.skip_next_update("BTCUSDT")
            with trio.fail_after(30):
                while not books.store.entry(VENUE, "BTCUSDT").resyncs:
                    await trio.sleep(0.01)
                await books.wait_live(VENUE, "BTCUSDT")
            for s in fake.symbols:
                await converge(view_top(books, VENUE, s), fake, s)
        assert watch.not_live == [], watch.not_live[:5]
        assert len(requests_for(fake, "BTCUSDT")) == fetched + 2  # the late one, then one that fits
        stats = books.statistics()[VENUE]
        assert stats.book_resyncs == {"gap": 1} and stats.failures == {} and fake.connections_accepted == 1


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


async def test_rest_429_blocks_the_venue_and_retries_that_fetch(nursery, pacer, autojump_clock):
    """A 429 is no failure of the connection: every REST request of the venue
    waits out ``Retry-After``, then the same book's snapshot is fetched again."""
    fake = await start(nursery)
    fake.rest_fail(429, count=1, retry_after=2)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
        stats = books.statistics()[VENUE]
    (told, refused), *rest = fake.rest_log
    # both snapshots went out at once; the one refused is asked for again after Retry-After
    assert [path for _, path in rest].count(refused) == 1
    assert all(t - told < 0.05 or t - told >= 2.0 for t, _ in rest), rest  # nothing while told to wait
    assert next(t for t, path in rest if path == refused) - told < 2.1
    assert stats.rest_errors == 1 and len(fake.rest_log) == 3
    assert stats.failures == {} and stats.attempts == 1 and stats.book_resyncs == {} and fake.connections_accepted == 1


async def test_a_429_in_one_resync_holds_every_snapshot_of_the_venue(nursery, pacer, autojump_clock):
    """BTCUSDT's refetch is told to wait 5 s: ETHUSDT's refetch, asked for
    meanwhile, waits too (the limiter is the venue's); then both go through,
    and the connection never ends."""
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        asked = len(fake.rest_log)
        fake.rest_fail(429, count=1, retry_after=5)
        fake.skip_next_update("BTCUSDT")
        with trio.fail_after(30):
            while len(fake.rest_log) == asked:
                await trio.sleep(0.01)
            told = fake.rest_log[asked][0]
            fake.skip_next_update("ETHUSDT")
            while not books.store.entry(VENUE, "ETHUSDT").resyncs:
                await trio.sleep(0.01)
            assert trio.current_time() - told < 1.0  # ETHUSDT needs a snapshot while the venue is held
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
        stats = books.statistics()[VENUE]
    (_, refused), *later = fake.rest_log[asked:]
    assert refused == "/api/v3/depth?symbol=BTCUSDT&limit=100"
    assert sorted(p for _, p in later) == [refused, "/api/v3/depth?symbol=ETHUSDT&limit=100"]
    assert all(5.0 <= t - told < 5.1 for t, _ in later), later  # nothing while told to wait, then at once
    assert stats.rest_errors == 1 and stats.book_resyncs == {"gap": 2}
    assert stats.failures == {} and stats.attempts == 1 and fake.connections_accepted == 1


async def test_silence_trips_watchdog_under_mock_clock(nursery, pacer, autojump_clock):
    fake = await start(nursery)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        fake.silence()
        silenced = trio.current_time()
        with trio.fail_after(60):
            await books.wait_state(VENUE, "BTCUSDT", BookState.STALE)  # at the raise, before the close handshake
        waited = trio.current_time() - silenced
        assert 14.0 <= waited <= 16.0  # the 15 s watchdog, in virtual time
        with trio.fail_after(60):
            while not books.statistics()[VENUE].failures:
                await trio.sleep(0.01)
        assert books.statistics()[VENUE].failures == {"heartbeat": 1}
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
