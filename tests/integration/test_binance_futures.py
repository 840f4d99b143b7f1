"""Binance USD-M futures against its fake over real loopback sockets, in process.

The shared tests take the fake class from the ``fake_cls`` fixture;
``tests/integration/test_asterdex.py`` imports them and overrides it, so both
venues of the protocol family run the same checks.
"""

from __future__ import annotations

import attrs
import httpx
import pytest
import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.runner import Books, build_store
from trio_books.supervise import supervise_venue
from trio_books.testing import FakeBinanceFutures
from trio_books.testing.harness import LiveWatch, assert_full_jitter, converge, recover, resyncs_alone, view_top
from trio_books.venues import get_venue
from trio_books.venues.binance import BINANCE_FUTURES, USDM, feed_factory

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture
def fake_cls():
    return FakeBinanceFutures


async def start(nursery, fake_cls, **kw):
    kw.setdefault("rate", 50)
    return await nursery.start(fake_cls(SYMBOLS, **kw).serve)


def config(fake, **extra):
    extra.setdefault("depth", 100)
    extra.setdefault("backoff_base", 0.1)
    extra.setdefault("backoff_cap", 0.2)
    return load_config_text(fake.config_toml(**extra))


async def wait_failure(books, venue: str, reason: str, at_least: int = 1) -> None:
    while books.statistics()[venue].failures.get(reason, 0) < at_least:
        await trio.sleep(0.02)


async def test_live_equals_truth(nursery, fake_cls):
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, 100), fake, s, n=100)
            assert books.view(venue, s).update_id == fake.last_id[s]
        stats = books.statistics()[venue]
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        (client,) = fake.clients
        assert client.path == fake.route + "/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
        paths = sorted(p for _, p in fake.rest_log)
        assert paths == [f"{fake.depth_path}?symbol={s}&limit=100" for s in sorted(SYMBOLS)]
    async with httpx.AsyncClient() as http:  # the fake, like the venue, takes only the documented limits
        resp = await http.get(f"{fake.rest_url}{fake.depth_path}?symbol=BTCUSDT&limit=200")
        assert resp.status_code == 400 and resp.json()["code"] == -1130


async def test_quiet_start_bridges_on_pu(nursery, fake_cls):
    """No event before the snapshot: the first event's ``pu`` is ``lastUpdateId``."""
    fake = await start(nursery, fake_cls, rate=0)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)  # snapshots fetched after 1 s without events
        await fake.burst(20)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)
            assert books.view(venue, s).update_id == fake.last_id[s]
        assert books.statistics()[venue].failures == {} and fake.connections_accepted == 1


def requests_for(fake, symbol: str) -> list[float]:
    """When the fake's REST depth endpoint was asked for ``symbol``."""
    return [t for t, path in fake.rest_log if f"symbol={symbol}&" in path]


async def test_gap_resyncs_that_book_alone(nursery, pacer, autojump_clock, fake_cls):
    """A break in BTCUSDT's ``pu`` chain refetches its snapshot alone on the
    open connection; ETHUSDT is live at every scheduling step."""
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        entry = books.store.entry(venue, "BTCUSDT")
        fetched = len(requests_for(fake, "BTCUSDT"))
        watch, back = await resyncs_alone(books, fake, venue, "BTCUSDT", lambda: fake.skip_next_update("BTCUSDT"))
        assert back < 1.0  # one snapshot away, not a reconnect
        assert watch.steps > 20 and watch.not_live == [], watch.not_live[:5]
        assert len(requests_for(fake, "BTCUSDT")) == fetched + 1  # exactly one snapshot refetched
        stats = books.statistics()[venue]
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        assert stats.book_resyncs == {"gap": 1} and stats.resyncs == 1 and dict(entry.resyncs) == {"gap": 1}


async def test_a_late_snapshot_bridges_on_pu_without_a_refetch(nursery, pacer, autojump_clock, fake_cls):
    """USD-M step 3: a resync's snapshot answered after more events were
    buffered is not too old (the first of them has ``pu`` = ``lastUpdateId``):
    the buffer is replayed on it, one fetch, and the book equals the truth."""
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        fetched = len(requests_for(fake, "BTCUSDT"))
        with LiveWatch(books.store, venue, ["ETHUSDT"]) as watch:
            fake.late_snapshot("BTCUSDT", 0.2)  # ten events of the stream go by meanwhile
            fake.skip_next_update("BTCUSDT")
            with trio.fail_after(30):
                while not books.store.entry(venue, "BTCUSDT").resyncs:
                    await trio.sleep(0.01)
                await books.wait_live(venue, "BTCUSDT")
            for s in SYMBOLS:
                await converge(view_top(books, venue, s), fake, s)
        assert watch.not_live == [], watch.not_live[:5]
        assert len(requests_for(fake, "BTCUSDT")) == fetched + 1
        stats = books.statistics()[venue]
        assert stats.book_resyncs == {"gap": 1} and stats.failures == {} and fake.connections_accepted == 1


async def test_drop_malformed_and_duplicate(nursery, fake_cls):
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        await fake.drop()
        with trio.fail_after(10):
            await wait_failure(books, venue, "close")
            await books.wait_live(venue)
        fake.send_malformed()
        with trio.fail_after(10):
            await wait_failure(books, venue, "bad_frame")
            await books.wait_live(venue)
        fake.duplicate_next()  # the event just applied, again: skipped, not a resync
        sent = fake.events_sent
        with trio.fail_after(5):
            while fake.events_sent < sent + 20:
                await trio.sleep(0.02)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)
        assert books.statistics()[venue].failures == {"close": 1, "bad_frame": 1}
        assert fake.connections_accepted == 3


async def test_rest_429_blocks_the_venue_and_retries_that_fetch(nursery, pacer, autojump_clock, fake_cls):
    """A 429 is no failure of the connection: every REST request of the venue
    waits out ``Retry-After``, then the same book's snapshot is fetched again."""
    fake = await start(nursery, fake_cls)
    fake.rest_fail(429, count=1, retry_after=1)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)
        stats = books.statistics()[venue]
    (told, refused), *rest = fake.rest_log
    # both snapshots went out at once; the one refused is asked for again after Retry-After
    assert [path for _, path in rest].count(refused) == 1
    assert all(t - told < 0.05 or t - told >= 1.0 for t, _ in rest), rest  # nothing while told to wait
    assert next(t for t, path in rest if path == refused) - told < 1.1
    assert stats.rest_errors == 1 and len(fake.rest_log) == 3
    assert stats.failures == {} and stats.attempts == 1 and stats.book_resyncs == {} and fake.connections_accepted == 1


async def test_rest_5xx_is_retried_within_the_attempt(nursery, fake_cls):
    fake = await start(nursery, fake_cls, rate=0)
    fake.rest_fail(503, count=2)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        stats = books.statistics()[venue]
        assert stats.rest_errors == 2 and stats.failures == {} and fake.connections_accepted == 1
        assert fake.snapshot_requests == 4  # two failed, then one per symbol
        await fake.burst(5)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)


async def test_subscribe_rejection_backs_off(nursery, pacer, autojump_clock, fake_cls):
    fake = await start(nursery, fake_cls, rate=5)
    fake.reject_subscribe = True  # {"code":2,"msg":"Invalid request: ..."} and a close
    venue = fake.venue_id
    async with open_books(config(fake, backoff_base=1.0, backoff_cap=30.0)) as books:
        await trio.sleep(60)  # ceilings 1+2+4+8+16 s: at least 6 attempts fit
        stats = books.statistics()[venue]
        assert set(stats.failures) == {"rejected"} and stats.failures["rejected"] >= 5
        assert "venue error 2: Invalid request: fake: subscription rejected" in stats.last_error
        assert all(books.state(venue, s) is not BookState.LIVE for s in SYMBOLS)
        assert_full_jitter(fake.connected_at, fewer_than=15)  # vs ~600 attempts in 60 s at a 0.1 s floor
        fake.reject_subscribe = False
        await recover(books, fake, venue, SYMBOLS)


async def test_silence_ends_the_attempt_at_the_watchdog(nursery, pacer, autojump_clock, fake_cls):
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    hb = get_venue(venue).heartbeat
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        fake.silence()  # open, nothing sent; our pings still get pongs
        silenced = trio.current_time()
        with trio.fail_after(120):
            await books.wait_state(venue, "BTCUSDT", BookState.STALE)  # at the raise, before the close handshake
        assert hb.watchdog - 1 <= trio.current_time() - silenced <= hb.watchdog + 1
        with trio.fail_after(30):
            await wait_failure(books, venue, "heartbeat")
        stats = books.statistics()[venue]
        assert stats.failures == {"heartbeat": 1} and f"no frame for {hb.watchdog:g} s" in stats.last_error
        await recover(books, fake, venue, SYMBOLS, timeout=10)


async def test_subscription_that_never_delivers_is_no_data(nursery, pacer, autojump_clock, fake_cls):
    fake = await start(nursery, fake_cls)
    fake.mute_new_connections = True  # handshake completes, then nothing at all
    venue = fake.venue_id
    deadline = get_venue(venue).first_event_deadline
    async with open_books(config(fake, backoff_base=1.0, backoff_cap=2.0)) as books:
        with trio.fail_after(120):
            await wait_failure(books, venue, "no_data", at_least=2)
        stats = books.statistics()[venue]
        assert set(stats.failures) == {"no_data"} and "no book event within 30 s" in stats.last_error
        first_failure_at = fake.connected_at[0] + deadline
        assert fake.connected_at[1] - first_failure_at <= 2.5  # ended at the deadline, then the backoff
        assert fake.muted_connections == len(fake.connected_at) >= 2
        fake.mute_new_connections = False
        await recover(books, fake, venue, SYMBOLS, timeout=10)


async def test_the_retired_unrouted_url_is_caught_as_no_data(nursery, pacer, autojump_clock):
    """The same venue without the ``/public`` route reaches the retired path,
    which accepts and then sends nothing; the first-event deadline ends it."""
    fake = await start(nursery, FakeBinanceFutures)
    cfg = config(fake, backoff_base=1.0, backoff_cap=2.0)
    unrouted = attrs.evolve(BINANCE_FUTURES, connect=feed_factory(attrs.evolve(USDM, route="")))
    store = build_store(cfg)
    books = Books(store)
    async with trio.open_nursery() as inner:
        inner.start_soon(supervise_venue, unrouted, cfg.venues["binance_futures"], cfg.service, store)
        with trio.fail_after(120):
            await wait_failure(books, "binance_futures", "no_data", at_least=2)
        assert fake.muted_connections >= 2 and fake.paths[0].startswith("/stream?streams=btcusdt@depth@100ms")
        assert all(books.state("binance_futures", s) is not BookState.LIVE for s in SYMBOLS)
        inner.cancel_scope.cancel()
