"""BingX spot, the book failure domain: a symbol the venue refuses (80015) is
rejected alone; a bad push (crossed, or ``lastUpdateId`` going back) makes that
one book stale until the next push, nothing sent; 200 topics on one connection,
subscribed 0.11 s apart. Against the fake under MockClock, the other books
checked live at every scheduling step."""

from __future__ import annotations

import time

import pytest
import trio

from trio_books import load_config_text, open_books
from trio_books.testing import FakeBingx
from trio_books.testing.harness import LiveWatch, converge, refused_alone, resyncs_alone, view_top
from trio_books.venues.bingx import BINGX_SPOT

VENUE = "bingx_spot"
FAST = {"backoff_base": 0.1, "backoff_cap": 0.2}


def config(fake: FakeBingx, symbols: list[str], **extra):
    listed = "symbols = [" + ", ".join(f'"{s}"' for s in fake.symbols) + "]"
    wanted = "symbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]"
    return load_config_text(fake.config_toml(**{"depth": 20, **FAST, **extra}).replace(listed, wanted))


def subscribes_of(fake: FakeBingx, topic: str) -> list[float]:
    return [t for t, r in zip(fake.request_times, fake.subscribe_requests) if r["dataType"] == topic]


async def test_an_unknown_symbol_next_to_two_valid_ones_is_rejected_alone(nursery, autojump_clock, pacer):
    fake = await nursery.start(FakeBingx(["BTC-USDT", "ETH-USDT"], rate=5).serve)
    valid = ["BTC-USDT", "ETH-USDT"]
    async with open_books(config(fake, ["BTC-USDT", "NOPE-USDT", "ETH-USDT"], rejected_retry=5.0)) as books:
        stats = await refused_alone(books, fake, VENUE, valid, "NOPE-USDT")  # the refusal and two retries
        assert stats.book_errors == {"NOPE-USDT": "rejected: NOPE-USDT: venue error 80015 for NOPE-USDT@depth20: dataType not support"}
        times = subscribes_of(fake, "NOPE-USDT@depth20")
        assert [round(b - a, 1) for a, b in zip(times, times[1:])] == [5.0, 10.0] and fake.connections_accepted == 1


@pytest.mark.parametrize(("fault", "reason"), [("cross_next", "crossed"), ("regress_update_id", "gap")])
async def test_a_bad_push_makes_one_book_stale_until_the_next_push(nursery, autojump_clock, pacer, fault, reason):
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    fake = await nursery.start(FakeBingx(symbols, rate=4).serve)  # a push every 0.25 s
    async with open_books(config(fake, symbols)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        sick, healthy = "ETH-USDT", ["BTC-USDT", "SOL-USDT"]
        entry = books.store.entry(VENUE, sick)
        with LiveWatch(books.store, VENUE, healthy, served_ok=lambda e: not e.book.is_crossed()) as watch, \
                LiveWatch(books.store, VENUE, [sick]) as outage:
            getattr(fake, fault)(sick)
            with trio.fail_after(10):
                while not entry.resyncs:
                    await trio.sleep(0.01)
                await books.wait_live(VENUE, sick)
            await trio.sleep(2)
            for s in symbols:
                await converge(view_top(books, VENUE, s), fake, s)
        assert watch.steps > 100 and watch.not_live == [] and watch.bad_served == []
        stale = [t for t, _, state in outage.not_live]
        assert {state for _, _, state in outage.not_live} == {"stale"}
        assert 0 < stale[-1] - stale[0] <= 0.25 + 0.02  # back with the very next push
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {reason: 1} and dict(entry.resyncs) == {reason: 1}
        assert len(fake.subscribe_requests) == 3 and fake.connections_accepted == 1  # nothing sent to rebuild it


async def test_two_hundred_topics_on_one_connection_go_live_and_a_bad_push_fails_one(nursery, autojump_clock, pacer):
    began = time.perf_counter()
    n = BINGX_SPOT.max_symbols_per_connection
    symbols = [f"T{i:03d}-USDT" for i in range(n)]
    fake = await nursery.start(FakeBingx(symbols, rate=1, levels=10, ping_interval=5.0).serve)
    async with open_books(config(fake, symbols, depth=5)) as books:
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        live_at = trio.current_time()
        times = fake.request_times
        assert len(times) == n and all(b - a >= BINGX_SPOT.subscribe_spacing - 0.01 for a, b in zip(times, times[1:]))
        assert times[-1] - times[0] == pytest.approx((n - 1) * 0.11, abs=0.5)  # under 10 subscribes a second
        sick = symbols[123]
        watch, _ = await resyncs_alone(books, fake, VENUE, sick, lambda: fake.cross_next(sick), converge_all=False,
                                       timeout=10, settle=3, n=5)
        assert watch.not_live == [] and watch.bad_served == []
        for s in (symbols[0], symbols[-1]):
            await converge(view_top(books, VENUE, s, 5), fake, s, n=5)
        stats, raw = books.statistics()[VENUE], books.store.venues[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"crossed": 1} and stats.connections == 1
        assert fake.connections_accepted == 1 and len(fake.subscribe_requests) == n
        assert raw.channel_high_water < raw.channel_capacity // 50, (raw.channel_high_water, raw.channel_capacity)
    print(f"bingx 200 topics: {time.perf_counter() - began:.1f} s real, live at {live_at:.1f} s virtual, "
          f"{trio.current_time():.1f} s in all, high water {raw.channel_high_water}")
