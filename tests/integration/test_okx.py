"""OKX spot against its fake over real loopback sockets, in process."""

from __future__ import annotations

import pytest
import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeOkxSpot
from trio_books.testing.harness import converge, recover, view_top

VENUE = "okx_spot"
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


async def start(nursery, fake_cls=FakeOkxSpot, **kw) -> FakeOkxSpot:
    kw.setdefault("rate", 50)
    return await nursery.start(fake_cls(SYMBOLS, **kw).serve)


def config(fake: FakeOkxSpot, *, rest: bool = False, **extra):
    extra.setdefault("backoff_base", 0.1)
    extra.setdefault("backoff_cap", 0.2)
    text = fake.config_toml(**extra)
    if rest:
        text += "[venues.okx_spot.options]\nrest_snapshot = true\n"
    return load_config_text(text)


async def wait_failure(books, reason: str, at_least: int = 1) -> None:
    while books.statistics()[VENUE].failures.get(reason, 0) < at_least:
        await trio.sleep(0.02)


async def test_live_equals_truth_through_keepalive_and_maintenance_reset(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        await recover(books, fake, VENUE, SYMBOLS, live_timeout=10, timeout=10)
        # the unchanged-book update (seqId == prevSeqId) and a maintenance reset
        # (seqId < prevSeqId) both continue the chain: no resync
        await fake.keepalive()
        fake.maintenance("BTC-USDT")
        await fake.burst(5)
        await fake.keepalive("ETH-USDT")
        await fake.burst(5)
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s, 400), fake, s, n=400)
        stats = books.statistics()[VENUE]
        assert dict(stats.failures) == {} and stats.reconnects == 0
        assert books.view(VENUE, "BTC-USDT").update_id == fake.seq["BTC-USDT"] < 1_000_000  # reset, and followed
        assert fake.snapshot_requests == 0 and fake.subscribe_requests == 1  # the WS snapshot seeded both


async def wait_resync(books, symbol: str) -> None:
    entry = books.store.entry(VENUE, symbol)
    while not entry.resyncs:
        await trio.sleep(0.02)
    await books.wait_live(VENUE)


@pytest.mark.parametrize("fault", ["gap", "checksum"])
async def test_a_gap_or_checksum_resyncs_that_book_alone_by_unsubscribe_and_subscribe(nursery, fault):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        if fault == "gap":
            fake.skip_next_update("BTC-USDT")
        else:
            fake.corrupt_checksum_next("BTC-USDT")
        with trio.fail_after(10):
            await wait_resync(books, "BTC-USDT")
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s), fake, s)
        stats = books.statistics()[VENUE]
        assert stats.book_resyncs == {fault: 1} and dict(books.store.entry(VENUE, "BTC-USDT").resyncs) == {fault: 1}
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        # on the wire: the first subscribe, then that channel's unsubscribe and subscribe, on the one connection
        assert [(r.op, r.args) for r in fake.requests] == [
            ("subscribe", SYMBOLS), ("unsubscribe", ["BTC-USDT"]), ("subscribe", ["BTC-USDT"])]
        assert len({r.conn_id for r in fake.requests}) == 1


async def test_drop_and_malformed_frame_recover(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        with trio.fail_after(10):
            await wait_failure(books, "close")
            await books.wait_live(VENUE)
        fake.send_malformed()
        with trio.fail_after(10):
            await wait_failure(books, "bad_frame")
            await books.wait_live(VENUE)
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s), fake, s)
        assert fake.connections_accepted == 3


async def test_checksum_zero_is_not_a_mismatch(nursery):
    fake = await start(nursery, checksums=False)  # OKX since June 2026
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.burst(100)
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s, 400), fake, s, n=400)
        assert dict(books.statistics()[VENUE].failures) == {}
        assert fake.events_sent >= 200


async def test_every_symbol_refused_is_rejected_and_retried_on_the_connection(nursery, pacer, autojump_clock):
    fake = await start(nursery, rate=5)
    fake.reject_subscribe = True  # {"event":"error","msg":"...instId:X doesn't exist...","code":"60018"} per arg
    async with open_books(config(fake, rejected_retry=10.0)) as books:
        await trio.sleep(5)
        stats = books.statistics()[VENUE]
        assert stats.books == {s: "rejected" for s in SYMBOLS} and stats.state == "rejected"
        assert stats.book_errors["ETH-USDT"].startswith(
            "rejected: ETH-USDT: venue error 60018: Subscribe failed, wrong URL or channel:books,instId:ETH-USDT doesn't exist.")
        await trio.sleep(100)  # retried alone after 10, 20, 40 s (+ 80 s later): the slow backoff doubles
        retries = [r.at for r in fake.requests if r.args == ["ETH-USDT"]]
        assert [round(b - a) for a, b in zip(retries, retries[1:])] == [20, 40]  # the first went out with both
        assert round(retries[0] - fake.requests[0].at) == 10
        assert all(r.op == "subscribe" for r in fake.requests)  # a refused channel is never unsubscribed
        assert books.statistics()[VENUE].failures == {} and fake.connections_accepted == 1
        fake.reject_subscribe = False
        await recover(books, fake, VENUE, SYMBOLS, live_timeout=200)
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and fake.connections_accepted == 1 and stats.book_errors == {}


async def test_silence_pings_at_25s_then_ends_the_attempt(nursery, pacer, autojump_clock):
    fake = await start(nursery, rate=5)
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        assert fake.pings == []  # a busy connection is never pinged
        fake.silence()  # open, nothing sent, "ping" unanswered
        silenced = trio.current_time()
        with trio.fail_after(60):
            await books.wait_state(VENUE, "BTC-USDT", BookState.STALE)
        waited = trio.current_time() - silenced
        assert 29.0 <= waited <= 31.0  # the idle ping at 25 s, then 5 s for its pong
        (ping_at,) = fake.pings
        assert 24.5 <= ping_at - silenced <= 25.5
        await wait_failure(books, "heartbeat")  # counted once the attempt has wound down
        await recover(books, fake, VENUE, SYMBOLS, timeout=10)


async def test_quiet_feed_is_kept_alive_by_pong(nursery, pacer, autojump_clock):
    fake = await start(nursery, rate=0)  # no book changes at all
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await trio.sleep(80)
        assert len(fake.pings) >= 3  # one per 25 s of quiet, each answered by "pong"
        assert dict(books.statistics()[VENUE].failures) == {} and books.state(VENUE, "BTC-USDT") is BookState.LIVE


@pytest.mark.parametrize("ws_snapshot", [False, True], ids=["no-ws-snapshot", "ws-snapshot-ignored"])
async def test_rest_seeded_start(nursery, ws_snapshot):
    fake = await start(nursery, send_ws_snapshot=ws_snapshot)
    fake.snapshot_delay = 0.3  # updates buffer while the REST snapshot is in flight
    async with open_books(config(fake, rest=True)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s, 400), fake, s, n=400)
        assert fake.snapshot_requests >= 2
        fetched = fake.snapshot_requests
        assert fetched >= 2
        fake.skip_next_update("ETH-USDT")  # a gap: that book alone seeds from REST again
        with trio.fail_after(10):
            await wait_resync(books, "ETH-USDT")
        for s in SYMBOLS:
            await converge(view_top(books, VENUE, s), fake, s)
        stats = books.statistics()[VENUE]
        assert stats.book_resyncs == {"gap": 1} and stats.failures == {} and fake.connections_accepted == 1
        assert [path.split("instId=")[1].split("&")[0] for _, path in fake.rest_log[fetched:]] == ["ETH-USDT"]


async def test_missing_ws_snapshot_without_the_flag_says_so(nursery):
    fake = await start(nursery, send_ws_snapshot=False)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await wait_failure(books, "resync_limit")  # each book resyncs alone in vain, then the connection restarts
        stats = books.statistics()[VENUE]
        assert "set options.rest_snapshot = true" in stats.last_error and stats.book_resyncs["gap"] > 5
        assert fake.snapshot_requests == 0
