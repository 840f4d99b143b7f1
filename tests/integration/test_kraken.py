"""Kraken Spot v2 against its fake over real loopback sockets, in process."""

from __future__ import annotations

import json

import pytest
import trio

from trio_books import BookState, load_config_text, open_books
from trio_books import backoff as backoff_module
from trio_books.testing import FakeKraken
from trio_books.testing.harness import assert_exact_backoff, converge, view_top

VENUE = "kraken_spot"
SYMBOLS = ["BTC/USD", "ETH/USD"]
FAST = {"backoff_base": 0.1, "backoff_cap": 0.2}


TimedFake = FakeKraken  # the base fake notes accepted_at itself

async def start(nursery, **kw) -> TimedFake:
    kw.setdefault("rate", 50)
    return await nursery.start(TimedFake(SYMBOLS, **kw).serve)


async def wait_failure(books, reason: str, at_least: int = 1, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while books.statistics()[VENUE].failures.get(reason, 0) < at_least:
            await trio.sleep(0.01)


async def converge_all(books, fake, n: int = 10) -> None:
    for s in fake.symbols:
        await converge(view_top(books, VENUE, s, n), fake, s, n=n)


async def test_live_at_depth_10_equals_truth(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=10))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake, 10)
        # the wire: instrument first, then one book subscribe for both symbols at depth 10
        sent = [json.loads(m) for m in fake.clients[0].received]
        assert sent[0]["params"] == {"channel": "instrument", "snapshot": True}
        assert sent[1]["params"] == {"channel": "book", "symbol": SYMBOLS, "depth": 10, "snapshot": True}
        view = books.view(VENUE, "BTC/USD")
        assert len(view.bids) == len(view.asks) == 10  # truncated to the subscribed depth
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and fake.connections_accepted == 1 and fake.events_sent > 0


async def test_deeper_depth_with_trimmed_numbers_equals_truth(nursery):
    # the documentation's style: 0.566 for 0.5660; the served text has the pair's decimals again
    fake = await start(nursery, trim_zeros=True, levels=70)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake, 100)
        view = books.view(VENUE, "ETH/USD")
        assert len(view.bids) > 60
        assert all(len(p.split(".")[1]) == 1 and len(q.split(".")[1]) == 8 for p, q in view.bids + view.asks)
        assert books.statistics()[VENUE].failures == {}


async def wait_book_resync(books, symbol: str, reason: str, timeout: float = 10) -> None:
    """Until ``symbol`` was resynced for ``reason`` and is live again."""
    entry = books.store.entry(VENUE, symbol)
    with trio.fail_after(timeout):
        while not entry.resyncs.get(reason):
            await trio.sleep(0.01)
        await books.wait_live(VENUE, symbol)


def book_requests_since(fake, start: int) -> list[tuple[str, tuple[str, ...]]]:
    return [(method, symbols) for _, method, symbols in fake.book_requests[start:]]


async def test_skipped_update_fails_the_checksum_and_resyncs_that_book(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=25, **FAST))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        before = len(fake.book_requests)
        fake.skip_next_update("ETH/USD")
        await wait_book_resync(books, "ETH/USD", "checksum")
        assert fake.updates_skipped == 1
        await converge_all(books, fake, 25)
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"checksum": 1} and stats.resyncs == 1
        assert fake.connections_accepted == 1 and stats.reconnects == 0
        # the one book, unsubscribed and subscribed again on the live connection
        assert book_requests_since(fake, before) == [("unsubscribe", ("ETH/USD",)), ("subscribe", ("ETH/USD",))]
        assert dict(books.store.entry(VENUE, "ETH/USD").resyncs) == {"checksum": 1}
        assert not books.store.entry(VENUE, "BTC/USD").resyncs


async def test_corrupt_checksum_is_counted_under_checksum(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=10, **FAST))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.corrupt_checksum_next("BTC/USD")
        await wait_book_resync(books, "BTC/USD", "checksum")
        assert fake.checksums_corrupted == 1
        await converge_all(books, fake)
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"checksum": 1} and stats.reconnects == 0


async def test_checksum_check_can_be_switched_off(nursery):
    fake = await start(nursery)
    cfg = fake.config_toml(depth=10, **FAST) + "[venues.kraken_spot.options]\nchecksum = false\n"
    async with open_books(load_config_text(cfg)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.corrupt_checksum_next("BTC/USD")
        with trio.fail_after(10):
            while fake.checksums_corrupted == 0:
                await trio.sleep(0.01)
        await converge_all(books, fake)
        assert books.statistics()[VENUE].failures == {}


async def test_drop_and_malformed_frame_recover(nursery):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=10, **FAST))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        await wait_failure(books, "close")
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.send_malformed()
        await wait_failure(books, "bad_frame")
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake)
        stats = books.statistics()[VENUE]
        assert stats.failures == {"close": 1, "bad_frame": 1} and fake.connections_accepted == 3


async def test_subscribe_rejection_backs_off_growing(nursery, autojump_clock, pacer, monkeypatch):
    # take the top of every jitter range so the growth is visible exactly
    real = backoff_module.backoff_delay
    monkeypatch.setattr("trio_books.supervise.backoff_delay", lambda failures, **kw: real(failures, rng=lambda: 1.0, **kw))
    fake = await start(nursery)
    fake.reject_subscribe = True  # the request refused, naming no symbol: the connection's refusal
    cfg = load_config_text(fake.config_toml(depth=10, backoff_base=1.0, backoff_cap=8.0))
    async with open_books(cfg) as books:
        await wait_failure(books, "rejected", at_least=5, timeout=60)
        stats = books.statistics()[VENUE]
        assert stats.state == "degraded" and "Exceeded msg rate" in stats.last_error
        assert stats.book_resyncs == {}  # no book was refused: the request was
        assert_exact_backoff(fake.accepted_at)  # 1, 2, 4, 8 s plus the time to connect and be refused
        assert fake.rejections_sent >= 5  # one refusal per attempt
        fake.reject_subscribe = False
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


async def test_unknown_pair_is_rejected_alone_with_a_hint(nursery):
    fake = await start(nursery)
    cfg = load_config_text(fake.config_toml(**FAST).replace('"ETH/USD"', '"XBT/USD"'))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE, "BTC/USD")
            await books.wait_state(VENUE, "XBT/USD", BookState.REJECTED)
        stats = books.statistics()[VENUE]
        assert "XBT/USD: not a Kraken spot pair" in stats.book_errors["XBT/USD"]
        assert "(Kraken v2 spells XBT as BTC)" in stats.book_errors["XBT/USD"]
        # the book subscription left it out
        assert [(m, names) for _, m, names in fake.book_requests] == [("subscribe", ("BTC/USD",))]
        assert stats.failures == {} and fake.connections_accepted == 1


async def test_silence_ping_gets_no_pong_and_the_attempt_ends(nursery, autojump_clock, pacer):
    fake = await start(nursery)
    # a long watchdog, so the 30 s ping and its 10 s pong deadline are what notice
    cfg = load_config_text(fake.config_toml(depth=10, watchdog=120, **FAST))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        fake.silence()
        with trio.fail_after(120):
            await books.wait_state(VENUE, "BTC/USD", BookState.STALE)
        ended = trio.current_time() - fake.accepted_at[0]
        await wait_failure(books, "heartbeat")  # counted once the attempt has ended
        assert 40.0 <= ended <= 40.5  # ping at 30 s after connecting, no pong by 40 s
        stats = books.statistics()[VENUE]
        assert stats.failures == {"heartbeat": 1} and "no pong within 10 s" in stats.last_error
        assert fake.pings_answered == 0
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


async def test_silence_trips_the_frame_watchdog_by_default(nursery, autojump_clock, pacer):
    fake = await start(nursery)
    async with open_books(load_config_text(fake.config_toml(depth=10, **FAST))) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await trio.sleep(35)  # quiet for a while: pings answered, heartbeats flowing
        assert fake.pings_answered == 1 and books.statistics()[VENUE].failures == {}
        fake.paused = True  # no book updates: only heartbeats keep it alive
        await trio.sleep(25)
        assert books.statistics()[VENUE].failures == {}
        fake.silence()
        silenced = trio.current_time()
        with trio.fail_after(60):
            await books.wait_state(VENUE, "BTC/USD", BookState.STALE)
        assert 9.0 <= trio.current_time() - silenced <= 10.5  # the 10 s watchdog
        await wait_failure(books, "heartbeat")  # counted once the attempt has ended
        assert "no frame for 10 s" in books.statistics()[VENUE].last_error
        fake.paused = False
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


@pytest.mark.parametrize("seed", range(6))
async def test_gap_before_a_pause_shows_even_when_the_next_update_misses_the_window(nursery, pacer, autojump_clock, seed):
    # A skipped update changes the top of the book; the update after it may change
    # nothing inside a depth-10 client's window, and then that client gets no frame.
    # The fake must keep going until the gap can show, or the client would stay
    # live without the skipped change (a wrong book nobody could detect).
    fake = await start(nursery, rate=20, seed=seed)
    async with open_books(load_config_text(fake.config_toml(depth=10, **FAST))) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await converge_all(books, fake, 10)
        fake.paused = True
        fake.skip_next_update("ETH/USD")
        await fake.burst(1, ["ETH/USD"])  # the truth's top moves; nothing is sent
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s, 10), fake, s, n=10, timeout=60)
        # a checksum mismatch and a resync of that book, or a later update that overwrote the same level
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs in ({}, {"checksum": 1})
