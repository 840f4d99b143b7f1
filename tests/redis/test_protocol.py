"""The stream protocol, spoken by hand: what a consumer does with snapshots, updates,
holes and a new publisher (no trio-books instance publishing here)."""

from __future__ import annotations

import orjson
import trio

from trio_books import BookState
from trio_books.remote import open_remote_books
from trio_books.sinks.redis import INDEX_KEY, SNAPSHOTS_KEPT, publisher_key, stream_keys

from .helpers import wait_for

VENUE, SYMBOL = "kraken_spot", "BTC/USD"


class HandPublisher:
    def __init__(self, client, publisher: str) -> None:
        self.client = client
        self.publisher = publisher
        self.ukey, self.skey = stream_keys(VENUE, SYMBOL)
        client.set(publisher_key(publisher), "{}", px=60_000)
        client.hset(INDEX_KEY, f"{VENUE}:{SYMBOL}", orjson.dumps({"venue": VENUE, "symbol": SYMBOL, "publisher": publisher}))

    def snapshot(self, seq: int, bids, asks, state: str = "live") -> None:
        fields = {"type": "snapshot", "seq": str(seq), "publisher": self.publisher, "state": state,
                  "bids": orjson.dumps(bids), "asks": orjson.dumps(asks), "update_id": str(seq * 10)}
        uid = self.client.xadd(self.ukey, fields)
        self.client.xadd(self.skey, {"uid": uid, **fields}, maxlen=SNAPSHOTS_KEPT, approximate=False)

    def update(self, seq: int, bids, asks) -> None:
        self.client.xadd(self.ukey, {"type": "update", "seq": str(seq), "publisher": self.publisher,
                                     "bids": orjson.dumps(bids), "asks": orjson.dumps(asks), "update_id": str(seq * 10)})


async def test_snapshot_updates_gap_and_new_publisher(redis_server):
    client = redis_server.client()
    pub = HandPublisher(client, "p1")
    pub.snapshot(1, [["100.10", "1.0"], ["100.00", "2.0"]], [["100.20", "3.0"]])
    pub.update(2, [["100.10", "0"], ["100.05", "1.50"]], [])
    async with open_remote_books(redis_server.url, block_ms=100) as remote:
        with trio.fail_after(5):
            await remote.wait_live(VENUE, SYMBOL)
        await wait_for(lambda: remote.view(VENUE, SYMBOL).update_id == 20, what="update 2")
        view = remote.view(VENUE, SYMBOL)
        assert view.bids == (("100.05", "1.50"), ("100.00", "2.0")) and view.asks == (("100.20", "3.0"),)
        assert view.update_id == 20

        pub.update(3, [], [["100.20", "0"], ["100.30", "4.0"]])
        await wait_for(lambda: remote.view(VENUE, SYMBOL).update_id == 30, what="update 3")
        assert remote.view(VENUE, SYMBOL).asks == (("100.30", "4.0"),)

        # a hole (4 is missing), then a newer snapshot: the consumer re-reads it and carries on
        pub.update(5, [["1.00", "1"]], [])
        pub.snapshot(6, [["99.00", "1.0"]], [["101.00", "1.0"]])
        pub.update(7, [["99.50", "2.0"]], [])
        await wait_for(lambda: remote.state(VENUE, SYMBOL) is BookState.LIVE
                       and remote.view(VENUE, SYMBOL).update_id == 70, what="update 7")
        assert remote.view(VENUE, SYMBOL).bids == (("99.50", "2.0"), ("99.00", "1.0"))
        assert remote.remote_statistics().gaps == 1

        # the book goes stale at the source: every state change is a snapshot
        pub.snapshot(8, [], [], state="stale")
        with trio.fail_after(5):
            await remote.wait_state(VENUE, SYMBOL, BookState.STALE)

        # a restarted publisher starts at 1 again: its first message is a snapshot
        pub2 = HandPublisher(client, "p2")
        pub2.snapshot(1, [["98.00", "5.0"]], [["102.00", "5.0"]])
        with trio.fail_after(5):
            await remote.wait_live(VENUE, SYMBOL)
        assert remote.view(VENUE, SYMBOL).bids == (("98.00", "5.0"),)
        pub2.update(2, [["98.50", "1.0"]], [])
        await wait_for(lambda: remote.view(VENUE, SYMBOL).update_id == 20, what="p2 update 2")
        rs = remote.remote_statistics()
        assert rs.publisher_changes == 1 and rs.gaps == 1 and rs.bad_messages == 0

        # the old publisher still writing (a second instance): the index names p2, p1 is ignored
        pub.update(9, [["1.00", "1"]], [])
        pub2.update(3, [["97.00", "1.0"]], [])
        await wait_for(lambda: remote.view(VENUE, SYMBOL).update_id == 30, what="p2 update 3")
        assert remote.view(VENUE, SYMBOL).bids == (("98.50", "1.0"), ("98.00", "5.0"), ("97.00", "1.0"))
        rs = remote.remote_statistics()
        assert rs.foreign >= 1 and rs.gaps == 1  # (p2's first snapshot may also have come before the index named p2)
    client.close()


async def test_reads_from_the_start_when_no_snapshot_is_stored_yet(redis_server):
    client = redis_server.client()
    pub = HandPublisher(client, "p1")
    pub.update(1, [["1.0", "1"]], [])  # an update with nothing to apply it to: ignored
    async with open_remote_books(redis_server.url, books=[(VENUE, SYMBOL)], block_ms=100) as remote:
        await trio.sleep(0.3)
        assert remote.state(VENUE, SYMBOL) is BookState.SYNCING
        pub.snapshot(2, [["2.0", "1"]], [["3.0", "1"]])
        with trio.fail_after(5):
            await remote.wait_live(VENUE, SYMBOL)
        assert remote.view(VENUE, SYMBOL).bids == (("2.0", "1"),)
    client.close()


async def test_bad_message_is_counted_and_the_book_recovers(redis_server):
    client = redis_server.client()
    pub = HandPublisher(client, "p1")
    pub.snapshot(1, [["2.0", "1"]], [["3.0", "1"]])
    async with open_remote_books(redis_server.url, block_ms=100) as remote:
        with trio.fail_after(5):
            await remote.wait_live(VENUE, SYMBOL)
        client.xadd(pub.ukey, {"type": "update", "seq": "2", "publisher": "p1", "bids": "[[", "asks": "[]"})
        await wait_for(lambda: remote.remote_statistics().bad_messages == 1, what="the bad message")
        assert remote.statistics()[VENUE].failures["bad_frame"] == 1
        assert remote.state(VENUE, SYMBOL) is BookState.SYNCING
        pub.snapshot(3, [["2.5", "1"]], [["3.0", "1"]])
        with trio.fail_after(5):
            await remote.wait_live(VENUE, SYMBOL)
        assert remote.view(VENUE, SYMBOL).bids == (("2.5", "1"),)
        assert remote.remote_statistics().bad_messages == 1
    client.close()
