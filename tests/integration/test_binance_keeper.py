"""The book task (:class:`~trio_books.keeper.BookKeeper`) with the Binance
family's real protocol objects, fed event by event (no sockets, no REST: the
snapshot fetches it asks for are recorded and answered by hand).

* every resync of a book starts from a fresh chain (``SpotChain`` /
  ``FuturesChain``): ``proto.new_sequencer(symbol)`` is called again and
  nothing of the old chain survives;
* a snapshot older than the buffered stream is fetched again for that book
  alone, and too many of them in a row are a gap of that book;
* a fetch overtaken by a resync is dropped.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from loguru import logger

from trio_books import BookState, load_config_text
from trio_books.keeper import MAX_SNAPSHOT_REFETCH, BookKeeper, Fetched
from trio_books.model import Delta, Snapshot
from trio_books.runner import build_store
from trio_books.session import VenueRuntime
from trio_books.supervise import Attempt
from trio_books.venues import get_venue
from trio_books.venues.binance import FuturesChain, SpotChain

A, B = "BTCUSDT", "ETHUSDT"
CHAIN = {"binance_spot": SpotChain, "binance_futures": FuturesChain, "asterdex_futures": FuturesChain}


def ev(symbol: str, first: int, final: int, prev: int) -> Delta:
    """An event valid for both chains: spot reads ``U``/``u``, futures ``pu`` too."""
    return Delta(symbol, [("100.0", "1")], [("101.0", "1")], first, final, prev)


def snap(symbol: str, last: int) -> Snapshot:
    return Snapshot(symbol, [("99.0", "2")], [("102.0", "2")], last)


class Harness:
    def __init__(self, venue_id: str) -> None:
        cfg = load_config_text(f'[venues.{venue_id}]\nsymbols = ["{A}", "{B}"]\ndepth = 100\n')
        self.venue_id = venue_id
        self.store = build_store(cfg)
        rt = VenueRuntime(venue=get_venue(venue_id), cfg=cfg.venues[venue_id], service=cfg.service,
                          store=self.store, stats=self.store.venues[venue_id])
        self.proto = rt.venue.connect(rt.spec((A, B)))
        self.fetches: list[tuple[str, int]] = []  # (symbol, generation) of each snapshot fetch asked for
        self.send, recv = trio.open_memory_channel[list](100)
        outbox, _ = trio.open_memory_channel[object](100)
        self.keeper = BookKeeper(rt, self.proto, outbox, self.send, self.spawn, logger.bind(venue=venue_id), Attempt([]))
        self.recv = recv

    def spawn(self, fn, symbol: str, gen: int, purpose: str, *, name: str) -> None:
        assert fn.__name__ == "_fetch" and purpose == "sync", name  # a REST venue's only per-book path is a snapshot
        self.fetches.append((symbol, gen))

    async def feed(self, *events) -> None:
        self.send.send_nowait(list(events))
        await trio.testing.wait_all_tasks_blocked()

    def state(self, symbol: str) -> BookState:
        return self.store.state(self.venue_id, symbol)


@pytest.mark.parametrize("venue_id", list(CHAIN))
async def test_each_resync_gets_a_fresh_chain_and_old_snapshots_are_fetched_again(nursery, venue_id):
    h = Harness(venue_id)
    nursery.start_soon(h.keeper.run, h.recv)
    assert h.proto.new_sequencer(A) is not h.proto.new_sequencer(A)

    await h.feed(ev(A, 101, 102, 100), ev(B, 201, 203, 200))  # buffered; both snapshots asked for
    assert h.fetches == [(A, 0), (B, 0)]
    await h.feed(Fetched(0, A, snap(A, 99)))  # older than A's buffered stream: A's alone is fetched again
    assert h.fetches[2:] == [(A, 0)] and h.state(A) is BookState.SYNCING
    await h.feed(Fetched(0, B, snap(B, 202)), Fetched(0, A, snap(A, 101)))
    assert h.state(A) is h.state(B) is BookState.LIVE and h.keeper.syncs[A].update_id == 102

    old = h.keeper.syncs[A]
    assert old.sequencer != CHAIN[venue_id]()  # bridged, at id 102
    await h.feed(ev(A, 110, 111, 105), ev(B, 204, 206, 203))  # a break in A's chain; B goes on
    new = h.keeper.syncs[A]
    assert h.state(A) is BookState.STALE and h.state(B) is BookState.LIVE
    assert new is not old and new.sequencer is not old.sequencer and not new.live and new.buffer == []
    assert type(new.sequencer) is CHAIN[venue_id] and new.sequencer == CHAIN[venue_id]()  # nothing carried over
    assert h.fetches[3:] == [(A, 1)] and dict(h.store.entry(venue_id, A).resyncs) == {"gap": 1}

    await h.feed(ev(A, 112, 113, 111), Fetched(0, A, snap(A, 150)))  # the overtaken fetch's answer: dropped
    assert h.state(A) is BookState.STALE and h.fetches[4:] == []
    await h.feed(Fetched(1, A, snap(A, 112)))
    assert h.state(A) is BookState.LIVE and h.keeper.syncs[A].update_id == 113 and h.keeper.syncs[B].update_id == 206

    await h.feed(ev(A, 120, 121, 119))  # another break; the stream then runs ahead of every snapshot
    await h.feed(ev(A, 200, 201, 199))
    for i in range(MAX_SNAPSHOT_REFETCH):
        await h.feed(Fetched(2, A, snap(A, 150)))
        assert h.fetches[-1] == (A, 2) and h.state(A) is BookState.STALE
    await h.feed(Fetched(2, A, snap(A, 150)))  # one too many: a gap of that book, resynced afresh
    assert h.fetches[-1] == (A, 3) and h.keeper.syncs[A].sequencer == CHAIN[venue_id]()
    assert len(h.fetches) == 6 + MAX_SNAPSHOT_REFETCH
    assert dict(h.store.entry(venue_id, A).resyncs) == {"gap": 3} and h.state(B) is BookState.LIVE
    stats = h.store.venues[venue_id]
    assert stats.book_resyncs == {"gap": 3} and stats.failures == {} and not h.store.entry(venue_id, B).resyncs
