"""BingX spot against its fake over real loopback sockets, in process."""

from __future__ import annotations

import pytest
import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeBingx
from trio_books.testing.harness import converge, recover, view_top

VENUE = "bingx_spot"
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


async def start(nursery, **kw) -> FakeBingx:
    kw.setdefault("rate", 20)
    return await nursery.start(FakeBingx(SYMBOLS, **kw).serve)


def config(fake: FakeBingx, **extra):
    return load_config_text(fake.config_toml(depth=20, backoff_base=0.1, backoff_cap=0.2, **extra))


async def wait_failure(books, reason: str, at_least: int = 1) -> None:
    while books.statistics()[VENUE].failures.get(reason, 0) < at_least:
        await trio.sleep(0.02)


async def test_books_go_live_and_equal_truth(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        await recover(books, fake, VENUE, SYMBOLS, live_timeout=10, timeout=10)
        view = books.view(VENUE, "BTC-USDT")
        assert len(view.asks) == len(view.bids) == 20  # @depth20: the whole pushed book
        assert view.asks[0] == fake.top("BTC-USDT", 1)[1][0]  # best ask first although sent last
        assert view.update_id == fake.update_id["BTC-USDT"]
    assert sorted(r["dataType"] for r in fake.subscribe_requests) == ["BTC-USDT@depth20", "ETH-USDT@depth20"]
    assert all(r["reqType"] == "sub" for r in fake.subscribe_requests)


async def test_server_pings_are_answered_and_the_connection_holds(nursery, pacer, autojump_clock):
    fake = await start(nursery, rate=5)
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await trio.sleep(120)  # the fake closes a connection after 30 s of unanswered pings
        stats = books.statistics()[VENUE]
    assert fake.pings_sent >= 20
    assert len(fake.pongs) >= fake.pings_sent - 1  # every ping echoed (the last may be in flight)
    assert stats.failures == {} and fake.connections_accepted == 1


async def test_drop_malformed_and_bomb_recover(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        with trio.fail_after(10):
            await wait_failure(books, "close")
            await books.wait_live(VENUE)
        fake.send_malformed()  # the next frame is a truncated gzip member
        with trio.fail_after(10):
            await wait_failure(books, "bad_frame")
            await books.wait_live(VENUE)
        fake.send_gzip_bomb()  # 16 KB that would inflate to 16 MiB
        with trio.fail_after(10):
            await wait_failure(books, "bad_frame", 2)
            await books.wait_live(VENUE)
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s), fake, s)
        stats = books.statistics()[VENUE]
    assert "inflates past" in stats.last_error
    assert fake.connections_accepted == 4


async def test_update_id_going_back_fails_that_book_until_the_next_push(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.regress_update_id("ETH-USDT")
        entry = books.store.entry(VENUE, "ETH-USDT")
        with trio.fail_after(10):
            while not entry.resyncs:
                await trio.sleep(0.01)
            await books.wait_live(VENUE, "ETH-USDT")
        await converge(view_top(books, VENUE, "ETH-USDT"), fake, "ETH-USDT")
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"gap": 1} and dict(entry.resyncs) == {"gap": 1}
        assert fake.connections_accepted == 1 and len(fake.subscribe_requests) == 2  # nothing sent to rebuild it


async def test_refused_topics_are_rejected_books_retried_alone_with_a_growing_delay(nursery, pacer, autojump_clock):
    fake = await nursery.start(FakeBingx(SYMBOLS, rate=5).serve)
    fake.reject_subscribe = True  # each topic: one leaked data frame, then code 80015
    fake.reject_delay = 0.5  # time enough for the leaked frame to reach the book task
    cfg = load_config_text(fake.config_toml(depth=20, backoff_base=1.0, backoff_cap=30.0, rejected_retry=2.0))
    ever_live = False
    async with open_books(cfg) as books:

        async def watch() -> None:
            nonlocal ever_live
            while True:
                await books.store.wait_change()
                ever_live = ever_live or any(books.state(VENUE, s) is BookState.LIVE for s in SYMBOLS)

        nursery.start_soon(watch)
        await trio.sleep(40)
        stats = books.statistics()[VENUE]
        assert not ever_live  # the leaked frame of a refused topic never made a book live
        assert stats.books == {s: "rejected" for s in SYMBOLS} and stats.failures == {}
        assert all("80015" in stats.book_errors[s] and "dataType not support" in stats.book_errors[s] for s in SYMBOLS)
        assert fake.connections_accepted == 1 and stats.ignored.get("unrequested", 0) >= 2
        for symbol in SYMBOLS:  # 2, 4, 8, 16 s between one topic's subscribes (+ the 0.5 s refusal delay)
            times = [t for t, r in zip(fake.request_times, fake.subscribe_requests) if r["dataType"] == f"{symbol}@depth20"]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert len(gaps) == 4 and all(want <= gap <= want + 0.7 for gap, want in zip(gaps, (2.5, 4.5, 8.5, 16.5))), gaps
        fake.reject_subscribe = False
        await recover(books, fake, VENUE, SYMBOLS)
        assert fake.connections_accepted == 1


@pytest.mark.parametrize("fault", ["silence", "stop_pings"])
async def test_no_server_ping_for_60s_trips_the_watchdog(fault, nursery, pacer, autojump_clock):
    """Silence (open, no pushes, no pings) and pings stopping while depth keeps flowing
    both end the attempt 60 s after the last server ping: data is not a heartbeat."""
    fake = await start(nursery, rate=5)
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await trio.sleep(12)
        (client,) = fake.clients
        getattr(fake, fault)()
        frames_before = books.statistics()[VENUE].frames
        with trio.fail_after(120):
            await books.wait_state(VENUE, "BTC-USDT", BookState.STALE)
        waited = trio.current_time() - client.state["last_ping_at"]
        assert 59.5 <= waited <= 61.0  # 60 s after the last ping, in virtual time
        await wait_failure(books, "heartbeat")  # counted once the attempt has ended
        stats = books.statistics()[VENUE]
        assert stats.failures == {"heartbeat": 1} and "no heartbeat for 60 s" in stats.last_error
        if fault == "stop_pings":
            assert stats.frames - frames_before >= 500  # ~10 pushes/s kept coming the whole minute
        await recover(books, fake, VENUE, SYMBOLS)
