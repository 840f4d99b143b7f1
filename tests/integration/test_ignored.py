"""Events dropped on purpose are counted by reason (``/health`` ``ignored``, metric
``trio_books_events_ignored_total``), never dropped silently."""

from __future__ import annotations

import orjson
import trio

from trio_books import load_config_text, open_books
from trio_books.model import Delta, Snapshot
from trio_books.sync import SymbolSync
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import converge, view_top
from trio_books.venues.binance import SpotChain

VENUE = "binance_spot"


class AnySequence:
    def on_snapshot(self, snap, buffered):
        return True

    def check(self, delta):
        from trio_books.model import Verdict

        return Verdict.APPLY


def test_deltas_before_a_socket_snapshot_are_counted():
    sync = SymbolSync("X", 10, AnySequence(), lambda book, event: True, rest=False)
    sync.on_delta(Delta("X", [("1", "1")], [], first_id=1, final_id=1))
    sync.on_delta(Delta("X", [("1", "2")], [], first_id=2, final_id=2))
    assert sync.ignored == {"before_snapshot": 2}
    sync.on_snapshot(Snapshot("X", [("1", "5")], [("2", "1")], update_id=3))
    assert sync.on_delta(Delta("X", [("1", "6")], [], first_id=4, final_id=4))
    assert sync.ignored == {"before_snapshot": 2} and sync.book.best_bid() == ("1", "6")


def test_buffered_events_the_snapshot_contains_and_replays_are_counted():
    sync = SymbolSync("X", 10, SpotChain(), lambda book, event: True, rest=True)
    for first in (5, 7, 9):  # U..u = 5..6, 7..8, 9..10
        sync.on_delta(Delta("X", [("1", str(first))], [], first_id=first, final_id=first + 1))
    sync.on_snapshot(Snapshot("X", [("1", "1")], [("2", "1")], update_id=8))  # contains up to 8
    assert sync.ignored == {"already_applied": 2}
    assert sync.book.best_bid() == ("1", "9")
    replay = Delta("X", [("1", "9")], [], first_id=9, final_id=10)
    assert not sync.on_delta(replay)  # the exact replay of the last event
    assert sync.ignored == {"already_applied": 3}


async def test_service_counts_replays_and_unrequested_symbols(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50).serve)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        before = dict(books.statistics()[VENUE].ignored)
        stranger = {"stream": "xrpusdt@depth@100ms", "data": {
            "e": "depthUpdate", "E": 1, "s": "XRPUSDT", "U": 1, "u": 1, "b": [["0.5", "1"]], "a": []}}
        for client in list(fake.clients):
            await client.send(orjson.dumps(stranger).decode())
        fake.duplicate_next()  # the next depth event is sent twice: the replay is dropped
        with trio.move_on_after(10):
            while True:
                ignored = books.statistics()[VENUE].ignored
                if ignored.get("unrequested", 0) >= 1 and ignored.get("already_applied", 0) > before.get("already_applied", 0):
                    break
                await trio.sleep(0.02)
        assert ignored.get("unrequested", 0) == 1, ignored
        assert ignored.get("already_applied", 0) == before.get("already_applied", 0) + 1, (before, ignored)
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.state == "live"  # counted, not a failure
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
