"""The Binance family at its documented maximum of streams per connection.

Binance Spot and USD-M: 1024 streams per connection; AsterDEX: 200 (the
``Venue`` definitions carry the numbers from the docs). The first 100 streams
are named in the URL, the rest go out in SUBSCRIBE frames of 100, paced by
the venue's incoming-message limit. Every book must go live against the fake
within the REST weight budget — in the time the weight table allows — with the
update channel never near full; then a gap in one book refetches that book's
snapshot alone while the other books stay live at every scheduling step.
All in virtual time (MockClock); the fakes send one small event per symbol
per second, so the test takes seconds of real time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
import trio
from loguru import logger
from trio_websocket import ConnectionClosed, open_websocket_url

from trio_books import load_config_text, open_books
from trio_books.keeper import FIRST_SNAPSHOT_DELAY
from trio_books.rest import RestLimiter
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, converge, view_top
from trio_books.venues import get_venue
from trio_books.venues.binance import STREAMS_IN_URL, STREAMS_PER_SUBSCRIBE

DEPTH = {"binance_spot": 100, "binance_futures": 20, "asterdex_futures": 20}
"""Depths whose snapshot weight lets every book of a full connection be fetched
in one minute: spot 1024 × 5 = 5120 of 6000, futures 1024 × 2 = 2048 of 2400."""
RATE = 1.0  # events per second per symbol


@contextmanager
def snapshot_refetches() -> Iterator[list[str]]:
    """The symbols whose snapshot the core fetched again because it was older
    than the buffered stream (it logs each at DEBUG)."""
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["message"].split(": ")[1]), level="DEBUG",
                      filter=lambda r: "older than the first buffered event" in r["message"])
    try:
        yield seen
    finally:
        logger.remove(sink)


def weight_per_window(times: list[float], weight: int) -> int:
    """The most weight any sliding 60 s window carried."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - RestLimiter.WINDOW:
            j += 1
        best = max(best, (i - j + 1) * weight)
    return best


def expected_live_within(venue_id: str, n: int) -> float:
    """When every book can be live at the latest, from the docs' numbers: the
    last SUBSCRIBE frame goes out after the others at the venue's spacing; a
    book's snapshot is requested at its first event or a second after its
    stream was subscribed; each minute of REST weight buys
    ``budget // weight`` snapshots."""
    venue = get_venue(venue_id)
    frames = math.ceil(max(0, n - STREAMS_IN_URL) / STREAMS_PER_SUBSCRIBE)
    last_subscribed = max(0, frames - 1) * venue.subscribe_spacing
    budget = venue.rest_budget
    per_minute = budget.weight_per_minute // budget.snapshot_weight(DEPTH[venue_id])
    extra_minutes = math.ceil(n / per_minute) - 1
    return last_subscribed + min(1 / RATE, FIRST_SNAPSHOT_DELAY) + RestLimiter.WINDOW * extra_minutes


@pytest.mark.parametrize("venue_id", ["binance_spot", "binance_futures", "asterdex_futures"])
async def test_a_full_connection_goes_live_and_one_gap_resyncs_one_book(nursery, pacer, autojump_clock, venue_id):
    venue = get_venue(venue_id)
    n = venue.max_symbols_per_connection
    assert n == (200 if venue_id == "asterdex_futures" else 1024)
    symbols = [f"S{i:04d}USDT" for i in range(n)]
    fake = await nursery.start(fake_for(venue_id)(symbols, rate=RATE, levels=5, changes_per_event=1).serve)
    cfg = load_config_text(fake.config_toml(depth=DEPTH[venue_id], audit_interval=0))  # only sync snapshots counted
    with snapshot_refetches() as refetched:
        await run_full_connection(venue_id, fake, cfg, refetched)


async def run_full_connection(venue_id: str, fake, cfg, refetched: list[str]) -> None:
    venue = get_venue(venue_id)
    symbols = fake.symbols
    n = len(symbols)
    weight = venue.rest_budget.snapshot_weight(DEPTH[venue_id])
    async with open_books(cfg) as books:
        started = trio.current_time()
        with trio.fail_after(120):
            await books.wait_live(venue_id)
        took = trio.current_time() - started
        assert took <= expected_live_within(venue_id, n) + 0.5, took  # + connecting, fetching
        stats = books.statistics()[venue_id]
        assert stats.connections == 1 and stats.failures == {} and stats.book_resyncs == {}
        # one snapshot per book, plus spot's step 4 where a snapshot was taken just
        # before an event that arrived first (futures bridge such an event on pu)
        assert fake.connections_accepted == 1 and {p.split("=")[1].split("&")[0] for _, p in fake.rest_log} == set(symbols)
        assert len(fake.rest_log) == n + len(refetched) and (venue_id == "binance_spot" or refetched == [])
        assert weight_per_window([t for t, _ in fake.rest_log], weight) <= venue.rest_budget.weight_per_minute
        (client,) = fake.clients
        assert len(client.symbols) == n and client.path.count("@depth@100ms") == STREAMS_IN_URL

        sick = symbols[n // 2]
        others = [s for s in symbols if s != sick]
        with LiveWatch(books.store, venue_id, others) as watch:
            fake.skip_next_update(sick)
            entry = books.store.entry(venue_id, sick)
            with trio.fail_after(30):
                while not entry.resyncs:
                    await trio.sleep(0.01)
                faulted = trio.current_time()
                await books.wait_live(venue_id, sick)
            assert trio.current_time() - faulted < 1.0
            for s in (sick, symbols[0], symbols[-1]):
                await converge(view_top(books, venue_id, s), fake, s, n=5)
        assert watch.not_live == [], watch.not_live[:5]
        asked = [p for _, p in fake.rest_log].count(f"{fake.depth_path}?symbol={sick}&limit={DEPTH[venue_id]}")
        assert asked == 2 + refetched.count(sick)
        assert len(fake.rest_log) == n + len(refetched) + 1  # that book's snapshot, nobody else's
        rt_stats = books.store.venues[venue_id]
        assert rt_stats.channel_high_water < rt_stats.channel_capacity // 10, rt_stats.channel_high_water
        stats = books.statistics()[venue_id]
        assert stats.failures == {} and stats.reconnects == 0 and stats.book_resyncs == {"gap": 1}
        assert fake.connections_accepted == 1 and fake.limit_closes == 0  # within every documented limit



def subscribe(names: list[str], req: int) -> str:
    return orjson.dumps({"method": "SUBSCRIBE", "params": names, "id": req}).decode()


@pytest.mark.parametrize("venue_id", ["binance_spot", "binance_futures", "asterdex_futures"])
async def test_the_fake_enforces_the_documented_connection_limits(nursery, pacer, autojump_clock, venue_id):
    """What the test above relies on: one stream past the maximum, or one
    message past the incoming limit within a second, and the fake hangs up."""
    venue = get_venue(venue_id)
    fake = await nursery.start(fake_for(venue_id)(["BTCUSDT"], rate=0).serve)
    assert fake.max_streams == venue.max_symbols_per_connection
    assert 1 / venue.subscribe_spacing < fake.max_incoming_per_second
    names = [f"s{i}usdt@depth@100ms" for i in range(fake.max_streams + 1)]
    base = f"{fake.ws_url}{fake.route}/stream?streams="
    with trio.fail_after(30):
        async with open_websocket_url(base + "/".join(names[:STREAMS_IN_URL])) as ws:
            await ws.send_message(subscribe(names[STREAMS_IN_URL:-1], 1))
            assert await ws.get_message() == '{"result":null,"id":1}'  # exactly the maximum
            await trio.sleep(1)
            await ws.send_message(subscribe(names[-1:], 2))
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert fake.limit_closes == 1
        async with open_websocket_url(base + names[0]) as ws:
            for req in range(fake.max_incoming_per_second):  # as many as the second allows
                await ws.send_message(subscribe([], req))
            for req in range(fake.max_incoming_per_second):
                assert await ws.get_message() == f'{{"result":null,"id":{req}}}'
            await trio.sleep(1)
            for req in range(fake.max_incoming_per_second + 1):  # one too many
                await ws.send_message(subscribe([], req))
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
        assert fake.limit_closes == 2
