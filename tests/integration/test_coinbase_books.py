"""Coinbase Advanced Trade, the book failure domain: a product Coinbase leaves
out of its ack is rejected alone; one product's book is rebuilt on the live
connection (unsubscribe + subscribe ``level2``, a fresh snapshot), paced at 8
requests a second; up to 100 products on one connection. Against the fake under
MockClock, the other books checked live at every scheduling step."""

from __future__ import annotations

import time

import orjson
import pytest
import trio

from tests.venues.test_coinbase import ack, feed, rejected, snapshot_frame, update_frame
from trio_books import load_config_text, open_books
from trio_books.errors import SequenceGap
from trio_books.model import Delta, Snapshot
from trio_books.testing import FakeCoinbase
from trio_books.testing.harness import converge, refused_alone, resyncs_alone, view_top
from trio_books.venues.coinbase import COINBASE_SPOT

VENUE = "coinbase_spot"
FAST = {"backoff_base": 0.1, "backoff_cap": 0.2}
HB = {"heartbeats": ["heartbeats"]}


# --- the parser's bookkeeping --------------------------------------------------------------------
def test_resubscribing_one_product_is_not_a_rejection_and_restarts_its_stream():
    """Unsubscribe + subscribe of one product: the unsubscribe's ack lists fewer
    products (no rejection); updates in flight before that ack still pass (the
    book task drops them: the book is not live); after it, an update before the
    new snapshot is a fault of that book; the new snapshot restarts it."""
    proto = feed()
    proto.subscribe()
    both = {**HB, "level2": ["BTC-USD", "ETH-USD"]}
    assert proto.parse(snapshot_frame(0)) != [] and proto.parse(snapshot_frame(1, "ETH-USD")) != []
    assert proto.parse(ack(2, {"level2": ["BTC-USD", "ETH-USD"]})) == [] and proto.parse(ack(3, both)) == []
    unsub, sub = proto.resubscribe("ETH-USD")
    assert orjson.loads(unsub.frame) == {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "level2"}
    assert orjson.loads(sub.frame) == {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"}
    assert unsub.symbols == sub.symbols == ("ETH-USD",)
    (late,) = proto.parse(update_frame(4, product="ETH-USD"))  # sent before the venue saw the unsubscribe
    assert type(late) is Delta
    assert proto.parse(ack(5, {**HB, "level2": ["BTC-USD"]})) == []  # fewer: as asked
    with pytest.raises(SequenceGap, match="^ETH-USD: update before its snapshot$"):
        proto.parse(update_frame(6, product="ETH-USD"))
    (upd,) = proto.parse(update_frame(7))  # the other product never stopped
    assert upd.symbol == "BTC-USD"
    (snap,) = proto.parse(snapshot_frame(8, "ETH-USD"))
    assert type(snap) is Snapshot and snap.symbol == "ETH-USD"
    assert proto.parse(ack(9, both)) == []
    assert type(proto.parse(update_frame(10, product="ETH-USD"))[0]) is Delta


def test_a_rejected_product_is_retried_with_a_subscribe_alone():
    proto = feed(("BTC-USD", "NEW-USD"))
    proto.subscribe()
    assert [s for s, _ in rejected(proto.parse(ack(0, {"level2": ["BTC-USD"]})))] == ["NEW-USD"]
    assert proto.parse(ack(1, {**HB, "level2": ["BTC-USD"]})) == []
    (retry,) = proto.resubscribe("NEW-USD", unsubscribe=False)
    assert orjson.loads(retry.frame) == {"type": "subscribe", "product_ids": ["NEW-USD"], "channel": "level2"}
    assert [s for s, _ in rejected(proto.parse(ack(2, {**HB, "level2": ["BTC-USD"]})))] == ["NEW-USD"]
    proto.resubscribe("NEW-USD", unsubscribe=False)
    assert proto.parse(ack(3, {**HB, "level2": ["BTC-USD", "NEW-USD"]})) == []  # listed now


# --- against the fake ------------------------------------------------------------------------------
def config(fake: FakeCoinbase, products: list[str], **extra):
    listed = "symbols = [" + ", ".join(f'"{s}"' for s in fake.symbols) + "]"
    wanted = "symbols = [" + ", ".join(f'"{s}"' for s in products) + "]"
    return load_config_text(fake.config_toml(**{**FAST, **extra}).replace(listed, wanted))


def assert_paced(fake: FakeCoinbase) -> None:
    """At most 8 subscribe/unsubscribe frames a second (1/8 s apart; the loopback may
    bunch two arrivals by a hair)."""
    times = [t for t, _ in fake.request_log]
    assert all(b - a >= 0.125 - 0.01 for a, b in zip(times, times[1:])), times


def level2_requests(fake: FakeCoinbase, product: str) -> list[str]:
    return [m["type"] for _, m in fake.request_log if m.get("product_ids") == [product]]


async def test_an_unknown_product_next_to_two_valid_ones_is_rejected_alone(nursery, autojump_clock, pacer):
    fake = await nursery.start(FakeCoinbase(["BTC-USD", "ETH-USD"], rate=10).serve)
    valid = ["BTC-USD", "ETH-USD"]
    async with open_books(config(fake, ["BTC-USD", "NOPE-USD", "ETH-USD"], rejected_retry=5.0)) as books:
        stats = await refused_alone(books, fake, VENUE, valid, "NOPE-USD")  # the refusal and two retries
        assert stats.book_errors == {"NOPE-USD": "rejected: NOPE-USD: left out of the level2 subscriptions ack "
                                                 "(Coinbase silently drops unknown product ids: check the symbol)"}
        assert stats.book_resyncs == {"rejected": 3} and stats.failures == {} and stats.attempts == 1
        assert level2_requests(fake, "NOPE-USD") == ["subscribe", "subscribe"] and fake.connections_accepted == 1
        assert_paced(fake)


async def test_a_crossed_book_resyncs_that_product_alone(nursery, autojump_clock, pacer):
    products = ["BTC-USD", "ETH-USD", "SOL-USD"]
    fake = await nursery.start(FakeCoinbase(products, rate=20, levels=40).serve)
    async with open_books(config(fake, products)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        sick = "ETH-USD"
        entry = books.store.entry(VENUE, sick)
        snapshots = fake.snapshots_sent
        watch, _ = await resyncs_alone(books, fake, VENUE, sick, lambda: fake.cross_next(sick), timeout=30, settle=3)
        assert watch.steps > 100 and watch.not_live == [] and watch.bad_served == []
        stats = books.statistics()[VENUE]
        assert fake.crossed_sent == 1 and fake.snapshots_sent == snapshots + 1  # a fresh snapshot of that product only
        assert stats.failures == {} and stats.book_resyncs == {"crossed": 1} and dict(entry.resyncs) == {"crossed": 1}
        assert level2_requests(fake, sick) == ["unsubscribe", "subscribe"] and fake.connections_accepted == 1
        assert_paced(fake)


async def test_a_hundred_products_on_one_connection_go_live_and_one_resyncs_alone(nursery, autojump_clock, pacer):
    began = time.perf_counter()
    n = COINBASE_SPOT.max_symbols_per_connection
    products = [f"P{i:03d}-USD" for i in range(n)]
    fake = await nursery.start(FakeCoinbase(products, rate=2, levels=20).serve)
    async with open_books(config(fake, products)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        assert fake.request_log[0][1]["product_ids"] == products  # one level2 subscribe carries them all
        sick = products[42]
        watch, _ = await resyncs_alone(books, fake, VENUE, sick, lambda: fake.cross_next(sick), converge_all=False,
                                       timeout=30, settle=5)
        assert watch.not_live == [] and watch.bad_served == []
        for p in (products[0], products[-1]):
            await converge(view_top(books, VENUE, p), fake, p)
        stats, raw = books.statistics()[VENUE], books.store.venues[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"crossed": 1} and stats.connections == 1
        assert level2_requests(fake, sick) == ["unsubscribe", "subscribe"] and fake.connections_accepted == 1
        assert raw.channel_high_water < raw.channel_capacity // 50, (raw.channel_high_water, raw.channel_capacity)
    print(f"coinbase 100 products: {time.perf_counter() - began:.1f} s real, {trio.current_time():.1f} s virtual, "
          f"high water {raw.channel_high_water}")
