"""The drift audit: a level corrupted on the venue's side with the ids intact
(no check can see it) is caught by the next audit of that book, counted as
``drift``, and that book alone is rebuilt; audits that pass are counted too."""

from __future__ import annotations

import pytest
import trio

from trio_books import load_config_text, open_books
from trio_books.audit import Audit, drift
from trio_books.book import OrderBook
from trio_books.model import BookState, Delta, Snapshot
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, converge, view_top

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


@pytest.mark.parametrize("vid", ["binance_spot", "binance_futures", "asterdex_futures"])
async def test_a_silent_corruption_is_caught_within_one_audit_round(vid, nursery, autojump_clock, pacer):
    fake = await nursery.start(fake_for(vid)(SYMBOLS, rate=5, levels=40).serve)
    # min_complete_depth = 1: no shallow refresh, which would heal the corruption before the audit sees it
    cfg = load_config_text(fake.config_toml(depth=20, audit_interval=2, min_complete_depth=1))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(vid)
        with trio.fail_after(30):
            while books.statistics()[vid].audits.get("passed", 0) < 3:  # every book audited once, all equal
                await trio.sleep(0.1)
        entry = books.store.entry(vid, "ETHUSDT")
        with LiveWatch(books.store, vid, ["BTCUSDT", "SOLUSDT"]) as watch:
            fake.corrupt_silently("ETHUSDT")
            corrupted_at = trio.current_time()
            with trio.fail_after(30):
                while not entry.resyncs:
                    await trio.sleep(0.05)
            caught_after = trio.current_time() - corrupted_at
            error = entry.error
            with trio.fail_after(30):
                await books.wait_state(vid, "ETHUSDT", BookState.LIVE)
            for s in SYMBOLS:
                await converge(view_top(books, vid, s, 10), fake, s, n=10)  # within the proven range (depth 20)
        assert caught_after <= 3 * 2 + 2  # one round over three books at 2 s each (and the turn under way)
        assert dict(entry.resyncs) == {"drift": 1} and "differs at bid" in (error or ""), error
        assert watch.not_live == []
        stats = books.statistics()[vid]
        assert stats.audits["failed"] == 1 and stats.failures == {}


def book_of(bids, asks, depth=3) -> OrderBook:
    book = OrderBook(depth, tracked=True)
    book.apply_snapshot(bids, asks)
    return book


def test_drift_leaves_out_touched_prices_and_levels_past_either_proven_range():
    book = book_of([("10", "1"), ("9", "1"), ("8", "1")], [("11", "1"), ("12", "1"), ("13", "1")])
    snap = Snapshot("X", [("10", "1"), ("9", "2"), ("8", "1")], [("11", "1"), ("12", "1"), ("13", "1")], update_id=5)
    assert drift(book, snap, []) == "bid 9: venue 2, book 1"
    touched_later = [(6, [("9", "2")], [])]
    assert drift(book, snap, touched_later) is None  # an event past the snapshot changed it
    touched_before = [(5, [("9", "2")], [])]
    assert drift(book, snap, touched_before) == "bid 9: venue 2, book 1"  # that one is in the snapshot already
    deeper = Snapshot("X", [("10", "1"), ("9", "1"), ("8", "1"), ("7", "5")], [("11", "1"), ("12", "1"), ("13", "1")], update_id=5)
    assert drift(book, deeper, []) is None  # 7 is past the book's proven range
    missing = Snapshot("X", [("10", "1"), ("8", "1")], [("11", "1"), ("12", "1"), ("13", "1")], update_id=5)
    assert drift(book, missing, []) == "bid 9: venue 0, book 1"


def test_an_audit_is_skipped_when_it_cannot_be_trusted():
    audit = Audit(0, since=100)
    assert audit.skip_reason(Snapshot("X", [], [], update_id=99)) == "snapshot older than the book when the audit began"
    assert audit.skip_reason(Snapshot("X", [], [])) == "snapshot without an update id"
    assert audit.skip_reason(Snapshot("X", [], [], update_id=100)) is None
    for i in range(20_001):
        audit.record(Delta("X", [], [], i, i))
    assert audit.overflowed


async def test_okx_rest_seeded_books_are_audited_by_seq_id(nursery, autojump_clock, pacer):
    symbols = ["BTC-USDT", "ETH-USDT"]
    # checksums=False: OKX has sent checksum 0 since 2026-06-23, so the audit is what can see it
    fake = await nursery.start(fake_for("okx_spot")(symbols, rate=5, levels=40, checksums=False).serve)
    text = fake.config_toml(audit_interval=2) + "[venues.okx_spot.options]\nrest_snapshot = true\n"
    async with open_books(load_config_text(text)) as books:
        with trio.fail_after(30):
            await books.wait_live("okx_spot")
        with trio.fail_after(30):
            while books.statistics()["okx_spot"].audits.get("passed", 0) < 2:
                await trio.sleep(0.1)
        fake.corrupt_silently("ETH-USDT")
        entry = books.store.entry("okx_spot", "ETH-USDT")
        with trio.fail_after(30):
            while not entry.resyncs:
                await trio.sleep(0.05)
            await books.wait_state("okx_spot", "ETH-USDT", BookState.LIVE)
        await converge(view_top(books, "okx_spot", "ETH-USDT"), fake, "ETH-USDT")
        assert dict(entry.resyncs) == {"drift": 1}
        assert books.store.entry("okx_spot", "BTC-USDT").resyncs == {}
