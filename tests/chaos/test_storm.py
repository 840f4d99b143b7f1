"""Storm protection at depth 5000 (weight 250 per snapshot: Binance allows 6000
per minute, i.e. 24 snapshots): many books resyncing at once stay within the
venue's REST budget, and a gap in one book costs that book's snapshot alone."""

from __future__ import annotations

import trio

from tests.integration.test_binance_scale import snapshot_refetches, weight_per_window
from trio_books import load_config_text, open_books
from trio_books.rest import RestLimiter
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import LiveWatch, converge, view_top
from trio_books.venues.binance import spot_weight

VENUE = "binance_spot"
SYMBOLS = [f"S{i:02d}USDT" for i in range(50)]
WEIGHT = spot_weight(5000)


def depth_requests(fake) -> list[tuple[float, str]]:
    return [(t, path) for t, path in fake.rest_log if path.startswith("/api/v3/depth")]


async def test_fifty_symbols_and_a_forced_disconnect_stay_within_request_weight(nursery, pacer, autojump_clock):
    fake = await nursery.start(FakeBinanceSpot(SYMBOLS, rate=2, levels=20).serve)
    cfg = load_config_text(fake.config_toml(depth=5000, audit_interval=0))  # only resync snapshots counted
    with snapshot_refetches() as refetched:
        async with open_books(cfg) as books:
            with trio.fail_after(400):
                await books.wait_live(VENUE)
            first_sync = trio.current_time()
            await fake.drop()  # every symbol must resync at once
            with trio.fail_after(400):
                while books.statistics()[VENUE].reconnects == 0:
                    await trio.sleep(0.1)
                await books.wait_live(VENUE)
            stats = books.statistics()[VENUE]
    times = [t for t, _ in depth_requests(fake)]
    assert len(times) == 100 + len(refetched)  # each symbol twice (and spot's step 4), no retries, no storm
    assert weight_per_window(times, WEIGHT) <= 6000
    assert first_sync >= 60  # 50 × 250 weight cannot be had in less than about a minute
    assert stats.failures == {"close": 1} and stats.book_resyncs == {}  # pacing never turned into sync timeouts


async def test_a_gap_in_one_of_fifty_deep_books_refetches_that_snapshot_alone(nursery, pacer, autojump_clock):
    """Before the book failure domain a gap restarted the connection: 50
    snapshots at 250 weight, two minutes of budget. Now it is one snapshot, and
    the book is live again as soon as that snapshot is back."""
    fake = await nursery.start(FakeBinanceSpot(SYMBOLS, rate=2, levels=20).serve)
    cfg = load_config_text(fake.config_toml(depth=5000, audit_interval=0))  # only resync snapshots counted
    sick = SYMBOLS[25]
    with snapshot_refetches() as refetched:
        async with open_books(cfg) as books:
            with trio.fail_after(400):
                await books.wait_live(VENUE)
            assert trio.current_time() >= 120  # 50 snapshots: three minutes' worth of 24
            before, refetched_before = depth_requests(fake), len(refetched)
            now = trio.current_time()
            spent = sum(WEIGHT for t, _ in before if t > now - RestLimiter.WINDOW)
            assert spent + WEIGHT <= 6000  # the budget has room for one snapshot right now
            entry = books.store.entry(VENUE, sick)
            with LiveWatch(books.store, VENUE, [s for s in SYMBOLS if s != sick]) as watch:
                fake.skip_next_update(sick)
                with trio.fail_after(60):
                    while not entry.resyncs:
                        await trio.sleep(0.01)
                    faulted = trio.current_time()
                    await books.wait_live(VENUE, sick)
                assert trio.current_time() - faulted < 2.0  # seconds, not a minute
                for s in (sick, SYMBOLS[0], SYMBOLS[-1]):
                    await converge(view_top(books, VENUE, s), fake, s)
            assert watch.steps > 100 and watch.not_live == [], watch.not_live[:5]
            stats = books.statistics()[VENUE]
            assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
            assert stats.book_resyncs == {"gap": 1} and dict(entry.resyncs) == {"gap": 1}
    after = depth_requests(fake)[len(before):]
    again = refetched[refetched_before:]  # spot step 4, should that snapshot predate a buffered event
    assert set(again) <= {sick}
    assert [path for _, path in after] == [f"/api/v3/depth?symbol={sick}&limit=5000"] * (1 + len(again))
