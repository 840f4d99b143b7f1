"""OKX spot, book failure domains against the fake (MockClock, real loopback
sockets): an instrument the venue refuses next to two it serves, a connection
at the most ``books`` channels the venue module puts on one, with a gap in one
of them, and the 480 subscribe/unsubscribe requests a connection may make. A
Trio instrument (LiveWatch) checks the healthy books at every scheduling step."""

from __future__ import annotations

import pytest
import trio

import trio_books.venues.okx as okx_module
from trio_books import load_config_text, open_books
from trio_books.testing import FakeOkxSpot
from trio_books.testing.harness import LiveWatch, converge, refused_alone, view_top
from trio_books.venues.okx import OKX_SPOT

VENUE = OKX_SPOT.id
GOOD = ["BTC-USDT", "ETH-USDT"]
BAD = "XYZ-USDT"  # not listed by the fake: 60018 "...instId:XYZ-USDT doesn't exist..."


def config(fake, symbols, *, rest: bool = False, **extra):
    lines = [f"[venues.{VENUE}]", "symbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]",
             f'ws_url = "{fake.ws_url}"', f'rest_url = "{fake.rest_url}"', "backoff_base = 0.1", "backoff_cap = 0.2"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    if rest:
        lines += [f"[venues.{VENUE}.options]", "rest_snapshot = true"]
    return load_config_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("rest", [False, True], ids=["ws-snapshot", "rest-seeded"])
async def test_a_rejected_symbol_next_to_two_valid_ones(nursery, pacer, autojump_clock, rest):
    fake = await nursery.start(FakeOkxSpot(GOOD, rate=5, levels=30).serve)
    async with open_books(config(fake, [GOOD[0], BAD, GOOD[1]], rest=rest, rejected_retry=60.0)) as books:
        stats = await refused_alone(books, fake, VENUE, GOOD, BAD)  # refused, retried alone after 60 s, then 120 s later
        started = fake.requests[0].at  # the one request of all three channels
        assert fake.connections_accepted == 1
        assert [r.args for r in fake.requests][0] == [GOOD[0], BAD, GOOD[1]]
        retries = [r for r in fake.requests if BAD in r.args][1:]
        # both starts: the channel is refused at once (before any REST fetch), and each retry
        # subscribes the channel again first (a REST-seeded book needs its stream too)
        assert stats.book_errors[BAD].startswith(
            f"rejected: {BAD}: venue error 60018: Subscribe failed, wrong URL or channel:books,instId:{BAD} doesn't exist.")
        assert stats.book_resyncs == {"rejected": 3}
        assert [(r.op, r.args) for r in retries] == [("subscribe", [BAD])] * 2  # never unsubscribed
        assert [round(retries[0].at - started), round(retries[1].at - retries[0].at)] == [60, 120]
        if rest:
            assert not [path for _, path in fake.rest_log if f"instId={BAD}&" in path]  # never fetched while refused
        assert not books.store.entry(VENUE, GOOD[0]).resyncs and not books.store.entry(VENUE, GOOD[1]).resyncs


async def test_the_most_channels_a_connection_takes_go_live_then_a_gap_resyncs_one_book(nursery, pacer, autojump_clock):
    n = OKX_SPOT.max_symbols_per_connection
    symbols = [f"S{i:02d}-USDT" for i in range(n)]
    fake = await nursery.start(FakeOkxSpot(symbols, rate=5, levels=30).serve)
    async with open_books(config(fake, symbols)) as books:
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        assert fake.connections_accepted == 1 and [len(r.args) for r in fake.requests] == [n]  # one request
        sick = symbols[n // 2]
        healthy = [s for s in symbols if s != sick]
        with LiveWatch(books.store, VENUE, healthy, served_ok=lambda e: not e.book.is_crossed()) as watch:
            await trio.sleep(10)  # 1,450 updates on the connection
            fake.skip_next_update(sick)
            entry = books.store.entry(VENUE, sick)
            with trio.fail_after(60):
                while not entry.resyncs:
                    await trio.sleep(0.05)
                await books.wait_live(VENUE, sick)
            for s in (symbols[0], sick, symbols[-1]):
                await converge(view_top(books, VENUE, s), fake, s, timeout=30)
        assert watch.steps > 1000 and watch.not_live == [] and watch.bad_served == []
        stats = books.statistics()[VENUE]
        assert stats.book_resyncs == {"gap": 1} and dict(entry.resyncs) == {"gap": 1}
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        capacity = books.store.venues[VENUE].channel_capacity
        assert books.store.venues[VENUE].channel_high_water < capacity // 20
        assert [(r.op, r.args) for r in fake.requests[1:]] == [("unsubscribe", [sick]), ("subscribe", [sick])]


async def test_a_resync_past_the_request_budget_restarts_the_connection(nursery, monkeypatch):
    monkeypatch.setattr(okx_module, "OPS_PER_CONNECTION", 5)  # 480 an hour, in small
    fake = await nursery.start(FakeOkxSpot(GOOD, rate=20, levels=30).serve)
    async with open_books(config(fake, GOOD)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        entry = books.store.entry(VENUE, GOOD[0])
        for k in (1, 2, 3):  # 1 subscribe + 2 resyncs of 2 requests fill the budget; the third cannot fit
            fake.skip_next_update(GOOD[0])
            with trio.fail_after(10):
                while entry.resyncs["gap"] < k:
                    await trio.sleep(0.02)
                await books.wait_live(VENUE)
        stats = books.statistics()[VENUE]
        assert stats.book_resyncs == {"gap": 3} and stats.failures == {"gap": 1} and fake.connections_accepted == 2
        per_connection: dict[str, list[str]] = {}
        for r in fake.requests:
            per_connection.setdefault(r.conn_id, []).append(r.op)
        assert list(per_connection.values()) == [["subscribe", "unsubscribe", "subscribe", "unsubscribe", "subscribe"],
                                                 ["subscribe"]]
        for s in GOOD:
            await converge(view_top(books, VENUE, s), fake, s)
