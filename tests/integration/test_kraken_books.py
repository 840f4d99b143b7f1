"""Kraken v2, the book failure domain: a refused pair, a checksum fault and the
documented resync (unsubscribe + subscribe of that one book), from the parser's
frames up to 50 books on one connection against the fake (MockClock; the other
books are checked live at every scheduling step)."""

from __future__ import annotations

import json
import time

import pytest
import trio

from tests.venues.test_kraken import D10, MATIC_SNAPSHOT, MATIC_UPDATE, Replay, feed, instrument_frame, ready_feed, rx_frames
from trio_books import BookState, load_config_text, open_books
from trio_books.errors import ChecksumMismatch, SymbolRejected
from trio_books.testing import FakeKraken
from trio_books.testing.harness import LiveWatch, converge, resyncs_alone, view_top
from trio_books.venues.kraken import KRAKEN_SPOT

VENUE = "kraken_spot"
FAST = {"backoff_base": 0.1, "backoff_cap": 0.2}


# --- the parser's frames ---------------------------------------------------------------------
def test_a_pair_missing_from_the_instruments_is_rejected_and_left_out_of_the_book_subscription():
    proto = feed(("BTC/USD", "XBT/USD", "ETH/USD"), 25)
    rejected, reply = proto.parse(instrument_frame(("ETH/USD", "BTC/USD")))
    assert isinstance(rejected, SymbolRejected) and rejected.symbol == "XBT/USD"
    assert str(rejected) == "XBT/USD: not a Kraken spot pair: not in the instrument list (Kraken v2 spells XBT as BTC)"
    assert json.loads(reply.text)["params"] == {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25, "snapshot": True}
    (only,) = feed(("NOPE/USD",)).parse(instrument_frame(("BTC/USD",)))  # nothing left to subscribe: no request
    assert isinstance(only, SymbolRejected) and only.symbol == "NOPE/USD"


def test_resubscribe_is_unsubscribe_then_subscribe_of_that_book_with_the_same_params():
    proto = ready_feed(("BTC/USD", "ETH/USD"), 25)
    unsub, sub = proto.resubscribe("ETH/USD")
    assert unsub.symbols == sub.symbols == ("ETH/USD",)
    params = {"channel": "book", "symbol": ["ETH/USD"], "depth": 25, "snapshot": True}
    assert json.loads(unsub.frame) == {"method": "unsubscribe", "params": params, "req_id": 2}
    assert json.loads(sub.frame) == {"method": "subscribe", "params": params, "req_id": 2}
    (retry,) = proto.resubscribe("ETH/USD", unsubscribe=False)  # a refused symbol was never subscribed
    assert retry == sub


def test_a_checksum_mismatch_fails_one_book_and_its_fresh_snapshot_rebuilds_it():
    """Two books on one connection: a corrupt checksum fails only its book; after
    the resync (a fresh SymbolSync, as the core builds) the new snapshot makes it
    right again while the other book never stopped."""
    proto = ready_feed(("MATIC/USD", "BTC/USD"))
    btc = Replay("BTC/USD", 10, proto)
    matic = Replay("MATIC/USD", 10, proto)
    frames = rx_frames(D10)
    btc.frame(next(f for f in frames if '"type":"snapshot"' in f))
    matic.frame(MATIC_SNAPSHOT)
    with pytest.raises(ChecksumMismatch, match="^MATIC/USD: checksum 2114181698 does not match"):
        matic.frame(MATIC_UPDATE.replace("2114181697", "2114181698"))
    for raw in [f for f in frames if f.startswith('{"channel":"book","type":"update"')][:5]:
        btc.frame(raw)
    matic = Replay("MATIC/USD", 10, proto)
    matic.frame(MATIC_SNAPSHOT)
    matic.frame(MATIC_UPDATE)
    assert matic.sync.live and btc.sync.live and btc.checked == btc.matched == 6


# --- against the fake ------------------------------------------------------------------------
def config(fake: FakeKraken, symbols: list[str], **extra):
    listed = "symbols = [" + ", ".join(f'"{s}"' for s in fake.symbols) + "]"
    wanted = "symbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]"
    return load_config_text(fake.config_toml(**{**FAST, **extra}).replace(listed, wanted))


def requests_for(fake: FakeKraken, symbols: tuple[str, ...]) -> list[tuple[float, str]]:
    return [(t, method) for t, method, names in fake.book_requests if names == symbols]


async def test_a_refused_pair_next_to_two_valid_ones_is_rejected_alone(nursery, autojump_clock, pacer):
    """DOGE/EUR is in the instrument list but refused by the book subscription:
    rejected with Kraken's text, retried alone 5 s then 10 s later, while the two
    valid books are live at every step and the connection never restarts."""
    fake = await nursery.start(FakeKraken(["BTC/USD", "ETH/USD"], rate=10, levels=30).serve)
    valid = ["BTC/USD", "ETH/USD"]
    async with open_books(config(fake, ["BTC/USD", "DOGE/EUR", "ETH/USD"], depth=10, rejected_retry=5.0)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE, "BTC/USD")
            await books.wait_live(VENUE, "ETH/USD")
            await books.wait_state(VENUE, "DOGE/EUR", BookState.REJECTED)
        with LiveWatch(books.store, VENUE, valid, served_ok=lambda e: not e.book.is_crossed()) as watch:
            with trio.fail_after(60):
                while books.store.entry(VENUE, "DOGE/EUR").resyncs["rejected"] < 3:  # the refusal and two retries
                    await trio.sleep(0.05)
            for s in valid:
                await converge(view_top(books, VENUE, s, 10), fake, s, n=10)
        assert watch.steps > 100 and watch.not_live == [] and watch.bad_served == []
        stats = books.statistics()[VENUE]
        assert stats.books == {"BTC/USD": "live", "DOGE/EUR": "rejected", "ETH/USD": "live"}
        assert stats.book_errors == {"DOGE/EUR": "rejected: DOGE/EUR: kraken refused subscribe: Currency pair not supported DOGE/EUR"}
        assert stats.book_resyncs == {"rejected": 3} and stats.resyncs == 0
        assert stats.failures == {} and stats.attempts == 1 and fake.connections_accepted == 1
        retries = requests_for(fake, ("DOGE/EUR",))
        assert [m for _, m in retries] == ["subscribe", "subscribe"]  # never subscribed: nothing to unsubscribe
        first = fake.book_requests[0][0]
        assert [round(t - first, 1) for t, _ in retries] == [5.0, 15.0]


async def test_fifty_books_on_one_connection_go_live_and_a_checksum_fault_resyncs_one(nursery, autojump_clock, pacer):
    """The venue's maximum per connection: one book subscription carries all 50;
    the channel stays far from full; a corrupt checksum in one book rebuilds that
    book alone (unsubscribe + subscribe) while the other 49 stay live."""
    began = time.perf_counter()
    n = KRAKEN_SPOT.max_symbols_per_connection
    symbols = [f"C{i:02d}/USD" for i in range(n)]
    fake = await nursery.start(FakeKraken(symbols, rate=2, levels=20).serve)
    async with open_books(config(fake, symbols, depth=10)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        assert [(m, len(names)) for _, m, names in fake.book_requests] == [("subscribe", n)]
        sick = symbols[17]
        entry = books.store.entry(VENUE, sick)
        # settle: the stream goes on around the rebuilt book
        watch, _ = await resyncs_alone(books, fake, VENUE, sick, lambda: fake.corrupt_checksum_next(sick), converge_all=False,
                                       timeout=30, settle=5, n=10)
        assert watch.not_live == [] and watch.bad_served == []
        for s in (symbols[0], symbols[-1]):
            await converge(view_top(books, VENUE, s, 10), fake, s, n=10)
        stats, raw = books.statistics()[VENUE], books.store.venues[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"checksum": 1} and dict(entry.resyncs) == {"checksum": 1}
        assert [m for _, m in requests_for(fake, (sick,))] == ["unsubscribe", "subscribe"]
        assert fake.connections_accepted == 1 and stats.connections == 1
        assert raw.channel_high_water < raw.channel_capacity // 50, (raw.channel_high_water, raw.channel_capacity)
    print(f"kraken 50 books: {time.perf_counter() - began:.1f} s real, {trio.current_time():.1f} s virtual, "
          f"high water {raw.channel_high_water}")
