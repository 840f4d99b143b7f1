"""What the sink publishes for each change of a book (pure: no Redis involved)."""

from __future__ import annotations

import orjson

from trio_books.book import OrderBook
from trio_books.config import RedisSinkConfig
from trio_books.model import BookState
from trio_books.sinks.redis import RedisSink, diff_side, redacted
from trio_books.store import BookStore


def make(depth: int = 3, snapshot_every: int = 3):
    store = BookStore([("v", "S")])
    book = OrderBook()
    book.apply([("10.0", "1"), ("9.0", "1"), ("8.0", "1"), ("7.0", "1")], [("11.0", "1"), ("12.0", "1")])
    store.publish("v", "S", book)
    sink = RedisSink(RedisSinkConfig(depth=depth, snapshot_every=snapshot_every), store, "1/2")
    return store, book, sink, sink.pubs[0]


def levels(fields, side):
    return [tuple(x) for x in orjson.loads(fields[side])]


def test_diff_is_exact_removals_first():
    old = [("1.10", "5"), ("1.00", "2"), ("0.90", "1")]
    new = [("1.1", "5"), ("1.00", "3"), ("0.80", "1")]
    # a new spelling of a price: the old text is removed first, then the new text is set
    assert diff_side(old, new) == [("1.10", "0"), ("0.90", "0"), ("1.1", "5"), ("1.00", "3"), ("0.80", "1")]
    assert diff_side(new, new) == []
    book = OrderBook()
    book.apply(old, [])
    book.apply(diff_side(old, new), [])
    assert book.top_bids() == new  # the very same strings


async def test_state_changes_snapshots_and_updates():
    store, book, sink, pub = make()
    kind, f = sink.encode(pub)  # syncing: an empty snapshot that says so
    assert kind == "snapshot" and f["state"] == "syncing" and f["bids"] == "[]" and f["seq"] == "1"
    assert sink.encode(pub) is None  # nothing new
    store.set_state("v", ["S"], BookState.LIVE)
    kind, f = sink.encode(pub)  # (re)goes live: a full snapshot of the top `depth`
    assert kind == "snapshot" and f["state"] == "live" and f["seq"] == "2" and f["depth"] == "3"
    assert levels(f, "bids") == [("10.0", "1"), ("9.0", "1"), ("8.0", "1")]
    assert levels(f, "asks") == [("11.0", "1"), ("12.0", "1")]
    assert f["publisher"] == sink.publisher and f["version"] == str(store.entry("v", "S").seq)

    book.apply([("10.0", "0"), ("9.5", "2.50")], [("11.0", "1.000")])
    kind, f = sink.encode(pub)
    assert kind == "update" and f["seq"] == "3" and "state" not in f
    # within the top 3: 10.0 left, 9.5 came in; 11.0 has a new spelling of its quantity
    assert sorted(levels(f, "bids")) == sorted([("9.5", "2.50"), ("10.0", "0")])
    assert levels(f, "asks") == [("11.0", "1.000")]
    assert sink.encode(pub) is None
    book.apply([("1.0", "1")], [])  # below the published depth: nothing visible changed
    assert sink.encode(pub) is None
    for i in range(2):
        book.apply([], [("13.0", str(i + 1))])
        assert sink.encode(pub)[0] == "update"
    book.apply([], [("13.0", "9")])
    kind, f = sink.encode(pub)  # after snapshot_every = 3 updates (seq 3, 4, 5): a fresh snapshot
    assert kind == "snapshot" and f["seq"] == "6"

    store.set_state("v", ["S"], BookState.STALE)
    kind, f = sink.encode(pub)
    assert kind == "snapshot" and f["state"] == "stale" and f["bids"] == "[]" and f["asks"] == "[]"
    assert sink.encode(pub) is None


async def test_a_difference_larger_than_the_book_is_a_snapshot():
    store, book, sink, pub = make(depth=2, snapshot_every=100)
    store.set_state("v", ["S"], BookState.LIVE)
    assert sink.encode(pub)[0] == "snapshot"
    book.apply_snapshot([("5.0", "1"), ("4.0", "1")], [("6.0", "1"), ("7.0", "1")])
    kind, f = sink.encode(pub)  # 8 changed levels > 4 levels in the book
    assert kind == "snapshot" and levels(f, "bids") == [("5.0", "1"), ("4.0", "1")]


async def test_pending_queue_is_bounded_and_overflow_means_snapshot():
    store = BookStore([("v", s) for s in "ABC"])
    sink = RedisSink(RedisSinkConfig(queue=2), store)
    for pub in sink.pubs:
        pub.need_snapshot = False
        sink.mark(pub)
        sink.mark(pub)  # conflated: pending once
    assert len(sink.pending) == 2 and sink.stats.overflows == 1 and sink.pubs[2].need_snapshot
    assert sink.stats.pending_high_water == 2
    batch = sink._take_batch()
    assert batch == sink.pubs[:2]
    assert sink._take_batch() == [sink.pubs[2]]  # the overflowed book comes next


def test_password_is_not_shown():
    assert redacted("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted("redis://:secret@host/0") == "redis://***@host/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"


def test_metric_families_render_as_prometheus_text():
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from trio_books.sinks.redis import RedisSinkStats, sink_metric_families

    stats = RedisSinkStats(url="redis://x/0", shard="1/2", publisher="p", queue_capacity=10, messages=3, errors=1)
    stats.latency.observe(0.002)

    class Collector:
        def collect(self):
            yield from sink_metric_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    text = generate_latest(registry).decode()
    assert "trio_books_redis_messages_total 3.0" in text and "trio_books_redis_errors_total 1.0" in text
    assert 'trio_books_redis_publish_latency_seconds_bucket{le="0.0025"} 1.0' in text
    assert list(sink_metric_families(None)) == []
    assert stats.to_json()["messages"] == 3
