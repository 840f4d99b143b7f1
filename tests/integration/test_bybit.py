"""Bybit spot and linear against their fakes over real loopback sockets, in process."""

from __future__ import annotations

import time

import attrs
import pytest
import trio

import trio_books.venues.bybit as bybit_module
from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeBybitFutures, FakeBybitSpot
from trio_books.testing.harness import converge, recover, view_top

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PRODUCTS = [pytest.param(FakeBybitSpot, id="spot"), pytest.param(FakeBybitFutures, id="linear")]


async def start(nursery, fake_cls=FakeBybitSpot, symbols=SYMBOLS, **kw):
    kw.setdefault("rate", 50)
    return await nursery.start(fake_cls(symbols, **kw).serve)


def config(fake, **extra):
    extra.setdefault("backoff_base", 0.1)
    extra.setdefault("backoff_cap", 0.2)
    return load_config_text(fake.config_toml(**extra))


async def wait_failure(books, venue: str, reason: str, at_least: int = 1) -> None:
    while books.statistics()[venue].failures.get(reason, 0) < at_least:
        await trio.sleep(0.02)


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_live_equals_truth_on_one_connection(nursery, fake_cls):
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, 200), fake, s, n=200)  # the whole 200-level window
            view = books.view(venue, s)
            assert view.update_id == fake._u[(s, 200)]
            assert abs(view.exchange_ts - time.time()) < 60  # the fake's cts (ms), served in seconds
        stats = books.statistics()[venue]
        assert dict(stats.failures) == {} and stats.reconnects == 0
        assert fake.connections_accepted == 1
        assert fake.subscribe_requests == [["orderbook.200.BTCUSDT", "orderbook.200.ETHUSDT"]]  # one request
        assert fake.events_sent > 0


@pytest.mark.parametrize("fake_cls,depth", [(FakeBybitSpot, 50), (FakeBybitFutures, 1)], ids=["spot-50", "linear-1"])
async def test_shallow_depths_follow_the_venues_window(nursery, fake_cls, depth):
    # 60 levels a side, changes up to 80 ticks out: levels leave and enter the window
    fake = await start(nursery, fake_cls, rate=100)
    venue = fake.venue_id
    async with open_books(config(fake, depth=depth)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        await trio.sleep(0.5)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, depth), fake, s, n=depth)
            view = books.view(venue, s, 1000)
            assert len(view.bids) == len(view.asks) == depth
        assert dict(books.statistics()[venue].failures) == {}


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_gap_resyncs_that_book_alone_by_unsubscribe_and_subscribe(nursery, fake_cls):
    fake = await start(nursery, fake_cls)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        fake.skip_next_update("BTCUSDT")
        entry = books.store.entry(venue, "BTCUSDT")
        with trio.fail_after(10):
            while not entry.resyncs:
                await trio.sleep(0.02)
            await books.wait_live(venue)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)
        stats = books.statistics()[venue]
        assert stats.book_resyncs == {"gap": 1} and dict(entry.resyncs) == {"gap": 1}
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        # on the wire: the first subscribe, then that topic's unsubscribe and subscribe, on the one connection
        ops = [(r.op, r.args) for r in fake.requests]
        assert ops == [("subscribe", ["orderbook.200.BTCUSDT", "orderbook.200.ETHUSDT"]),
                       ("unsubscribe", ["orderbook.200.BTCUSDT"]), ("subscribe", ["orderbook.200.BTCUSDT"])]
        assert len({r.conn_id for r in fake.requests}) == 1 and fake.refusals == []


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_gap_in_the_last_update_before_a_pause_still_shows(nursery, pacer, autojump_clock, fake_cls):
    # The soak's divergence (bybit_futures ETHUSDT live without a level of the
    # truth): its last fault was a gap, and the stream paused for the comparison
    # right after the skipped update. Nothing came after it to show the gap, so
    # the client stayed live one update behind a truth it was never sent.
    fake = await start(nursery, fake_cls, rate=20)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, 200), fake, s, n=200, timeout=30)
        fake.paused = True
        fake.skip_next_update("ETHUSDT")
        await fake.burst(1, ["ETHUSDT"])  # the truth moves, ETHUSDT's u moves, nothing is sent
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, 200), fake, s, n=200, timeout=30)
        stats = books.statistics()[venue]
        assert stats.book_resyncs == {"gap": 1} and dict(books.store.entry(venue, "ETHUSDT").resyncs) == {"gap": 1}
        assert stats.failures == {} and fake.connections_accepted == 1
        assert books.view(venue, "ETHUSDT").update_id == fake._u[("ETHUSDT", 200)]


async def test_drop_and_malformed_frame_recover(nursery):
    fake = await start(nursery, FakeBybitSpot)
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
        for s in SYMBOLS:
            await converge(view_top(books, venue, s), fake, s)
        assert fake.connections_accepted == 3
        assert set(books.statistics()[venue].failures) == {"close", "bad_frame"}


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_restart_snapshot_u1_replaces_the_book_without_a_resync(nursery, fake_cls):
    fake = await start(nursery, fake_cls, rate=0)  # only what the test sends
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        await fake.burst(30)
        await converge(view_top(books, venue, "BTCUSDT"), fake, "BTCUSDT")
        before = books.view(venue, "BTCUSDT").update_id
        assert before > 1_000_000
        await fake.restart(changes=20)  # 20 unsent changes per symbol, then snapshots with u == 1
        await fake.burst(10)
        for s in SYMBOLS:
            await converge(view_top(books, venue, s, 200), fake, s, n=200)
            assert books.view(venue, s).update_id == fake._u[(s, 200)] <= 11  # the chain restarted at 1
        stats = books.statistics()[venue]
        assert dict(stats.failures) == {} and stats.reconnects == 0 and fake.connections_accepted == 1


async def test_every_symbol_refused_is_rejected_and_retried_on_the_connection(nursery, pacer, autojump_clock):
    fake = await start(nursery, FakeBybitSpot, rate=5)
    fake.reject_subscribe = True  # {"success":false,"ret_msg":"error:handler not found,topic:…"}
    venue = fake.venue_id
    async with open_books(config(fake, rejected_retry=10.0)) as books:
        await trio.sleep(5)
        stats = books.statistics()[venue]
        assert stats.books == {s: "rejected" for s in SYMBOLS} and stats.state == "rejected"
        assert stats.book_errors["BTCUSDT"] == ("rejected: BTCUSDT: venue refused subscribe: "
                                                "error:handler not found,topic:orderbook.200.BTCUSDT")
        await trio.sleep(100)  # retried alone after 10, 20, 40 s (+ 80 s later): the slow backoff doubles
        retries = [r.at for r in fake.requests if r.args == ["orderbook.200.ETHUSDT"]]
        assert [round(b - a) for a, b in zip(retries, retries[1:])] == [10, 20, 40]
        assert all(r.op == "subscribe" for r in fake.requests)  # a refused topic is never unsubscribed
        assert books.statistics()[venue].failures == {} and fake.connections_accepted == 1
        fake.reject_subscribe = False
        await recover(books, fake, venue, SYMBOLS, live_timeout=200)
        stats = books.statistics()[venue]
        assert stats.failures == {} and fake.connections_accepted == 1 and stats.book_errors == {}


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_silence_the_missed_pong_ends_the_attempt(nursery, pacer, autojump_clock, fake_cls):
    fake = await start(nursery, fake_cls, rate=5)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        with trio.fail_after(30):
            while not fake.pings:
                await trio.sleep(0.05)
        last_ping = fake.pings[-1]  # answered; the next one comes 20 s later
        fake.silence()  # open, nothing sent, pings unanswered
        with trio.fail_after(60):
            await books.wait_state(venue, "BTCUSDT", BookState.STALE)
        assert 29.0 <= trio.current_time() - last_ping <= 31.5  # 20 s to the next ping + 10 s for its pong
        await wait_failure(books, venue, "heartbeat")  # counted once the attempt has wound down
        assert len(fake.pings) == 2 and 19.5 <= fake.pings[1] - last_ping <= 20.5
        stats = books.statistics()[venue]
        assert dict(stats.failures) == {"heartbeat": 1} and "no pong within 10 s" in stats.last_error
        await recover(books, fake, venue, SYMBOLS, timeout=10)


async def test_quiet_book_is_kept_alive_by_pongs(nursery, pacer, autojump_clock):
    fake = await start(nursery, FakeBybitFutures, rate=0)  # no book change at all
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        await trio.sleep(130)  # past the 60 s silence watchdog twice over
        assert len(fake.pings) >= 6  # every 20 s, each answered
        assert dict(books.statistics()[venue].failures) == {}
        assert books.state(venue, "BTCUSDT") is BookState.LIVE


async def test_depth_1_resends_the_unchanged_book_and_that_is_no_gap(nursery, pacer, autojump_clock):
    fake = await start(nursery, FakeBybitFutures, rate=0)
    venue = fake.venue_id
    async with open_books(config(fake, depth=1)) as books:
        with trio.fail_after(30):
            await books.wait_live(venue)
        frames = books.statistics()[venue].frames
        await trio.sleep(10)  # no change: each topic's snapshot again every 3 s, same u
        assert books.statistics()[venue].frames - frames >= 2 * 3  # two topics, three re-sends each (+ pongs)
        assert dict(books.statistics()[venue].failures) == {}
        for s in SYMBOLS:
            assert books.view(venue, s).update_id == fake._u[(s, 1)]
            await converge(view_top(books, venue, s, 1), fake, s, n=1)


async def test_symbols_share_a_connection_and_split_past_the_limit(nursery, monkeypatch):
    symbols = [f"S{i:02d}USDT" for i in range(12)]
    fake = await start(nursery, FakeBybitSpot, symbols=symbols, rate=10)
    venue = fake.venue_id
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        assert fake.connections_accepted == 1
        assert [len(r) for r in fake.subscribe_requests] == [10, 2]  # spot: at most 10 args a request
        await converge(view_top(books, venue, symbols[-1]), fake, symbols[-1])
    monkeypatch.setattr(bybit_module, "BYBIT_SPOT", attrs.evolve(bybit_module.BYBIT_SPOT, max_symbols_per_connection=5))
    fake.subscribe_requests.clear()
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(venue)
        assert fake.connections_accepted == 1 + 3 and books.statistics()[venue].connections == 3
        assert sorted(len(r) for r in fake.subscribe_requests) == [2, 5, 5]
        for s in (symbols[0], symbols[11]):
            await converge(view_top(books, venue, s), fake, s)


@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_a_skipped_update_is_one_a_window_would_have_sent(fake_cls):
    # A change outside a shallow window sends nothing to that topic, so it cannot be
    # the "lost message": the skip waits for an update the window sees (before, it
    # was spent on such a change and the gap the test asked for never came: a CI
    # flake in the e2e test at depth 50).
    outside_first = 0
    for seed in range(12):
        fake = fake_cls(["BTCUSDT"], rate=0, seed=seed)
        topic = ("BTCUSDT", 1)
        fake._state(topic)  # a depth-1 subscription's window: most changes leave it alone
        fake.skip_next_update("BTCUSDT")
        u0 = fake._u[topic]
        for emitted in range(1, 200):
            await fake.emit("BTCUSDT")
            if fake._u[topic] != u0:
                break
        outside_first += emitted > 1
        assert fake._u[topic] == u0 + 1 and fake.hidden_gaps() == {"BTCUSDT"}  # u moved, nothing was sent
        await fake.emit("BTCUSDT")  # the skip is spent: later updates are sent again
        assert fake._u[topic] >= u0 + 1 and fake.hidden_gaps() in (set(), {"BTCUSDT"})
    assert outside_first > 0  # the case that matters happened
