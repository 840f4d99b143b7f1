"""No holes at the bottom of a window (Binance-style diff streams from a
depth-limited snapshot): in a market that trends well past the snapshot, every
level served equals the truth rank by rank, the book stays live throughout,
and a shallow book is refreshed behind the scenes (counted as ``shallow``)."""

from __future__ import annotations

import pytest
import trio

from trio_books import load_config_text, open_books
from trio_books.book import levels_equal
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch

DEPTH = 20


async def served_equals_truth(books, vid: str, fake, symbol: str, timeout: float = 10.0) -> int:
    """Pause the fake until every level the book serves equals the truth at its rank;
    returns how many levels per side were served (the smaller side)."""
    fake.paused = True
    try:
        with trio.fail_after(timeout):
            while True:
                view = books.view(vid, symbol)
                want_bids, want_asks = fake.top(symbol, max(len(view.bids), len(view.asks)))
                if levels_equal(list(view.bids), want_bids[: len(view.bids)]) and levels_equal(list(view.asks), want_asks[: len(view.asks)]):
                    assert view.complete_depth == (len(view.bids), len(view.asks))
                    return min(len(view.bids), len(view.asks))
                await trio.sleep(0.01)
    finally:
        fake.paused = False


@pytest.mark.parametrize("vid", ["binance_spot", "binance_futures", "asterdex_futures"])
async def test_a_trend_past_the_snapshot_never_serves_a_hole(vid, nursery, autojump_clock, pacer):
    symbols = ["BTCUSDT", "ETHUSDT"]
    fake = await nursery.start(fake_for(vid)(symbols, rate=20, levels=120).serve)
    cfg = load_config_text(fake.config_toml(depth=DEPTH))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(vid)
        fake.trend["BTCUSDT"] = 1  # one tick up per update: the asks the snapshot showed are all gone in a second
        served = []
        with LiveWatch(books.store, vid, symbols) as watch:
            for _ in range(20):
                await trio.sleep(0.5)
                served.append(await served_equals_truth(books, vid, fake, "BTCUSDT"))
        assert watch.not_live == []  # refreshed behind the scenes: never a non-live read
        entry = books.store.entry(vid, "BTCUSDT")
        assert entry.resyncs["shallow"] >= 3 and set(entry.resyncs) == {"shallow"}
        assert books.statistics()[vid].failures == {}
        assert sum(n >= DEPTH // 2 for n in served) >= 18, served  # the promise (half of depth) nearly always held


async def test_coinbase_with_a_depth_is_tracked_and_rebuilt_by_resubscription(nursery, autojump_clock, pacer):
    symbols = ["BTC-USD", "ETH-USD"]
    fake = await nursery.start(fake_for("coinbase_spot")(symbols, rate=20, levels=120).serve)
    cfg = load_config_text(fake.config_toml(depth=DEPTH))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live("coinbase_spot")
        fake.trend["BTC-USD"] = 1
        served = []
        with LiveWatch(books.store, "coinbase_spot", ["ETH-USD"]) as watch:
            for _ in range(10):
                await trio.sleep(0.5)
                with trio.fail_after(30):
                    await books.wait_live("coinbase_spot", "BTC-USD")
                served.append(await served_equals_truth(books, "coinbase_spot", fake, "BTC-USD"))
        assert watch.not_live == []  # the neighbour never noticed
        assert books.store.entry("coinbase_spot", "BTC-USD").resyncs["shallow"] >= 1
        assert books.statistics()["coinbase_spot"].failures == {}
