"""Publishing latency and throughput, measured and printed (``-s`` shows them); only
correctness is asserted, never time."""

from __future__ import annotations

import random

import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.book import OrderBook
from trio_books.config import RedisSinkConfig
from trio_books.remote import open_remote_books
from trio_books.sinks.redis import run_redis_sink
from trio_books.store import BookStore
from trio_books.testing import FakeBinanceSpot

from .helpers import converge_exact, sink_toml, wait_for


def pct(samples, q: float) -> str:
    if not samples:
        return "-"
    s = sorted(samples)
    return f"{s[min(len(s) - 1, int(q * len(s)))] * 1000:.2f} ms"


def report(title: str, seconds: float, sink, remote=None, changes: int | None = None) -> None:
    lines = [f"\n--- {title} ({seconds:.1f} s) ---"]
    if changes is not None:
        lines.append(f"book changes made      {changes / seconds:10.0f} /s")
    lines.append(f"messages published     {sink.messages / seconds:10.0f} /s  ({sink.updates} updates, {sink.snapshots} snapshots)")
    lines.append(f"bytes written          {sink.bytes / seconds / 1e6:10.2f} MB/s")
    lines.append(f"pipelines              {sink.batches / seconds:10.0f} /s  ({sink.messages / max(1, sink.batches):.1f} messages each, "
                 f"{sink.write_seconds / max(1, sink.batches) * 1000:.2f} ms each)")
    lines.append(f"change -> in Redis     p50 {pct(sink.recent, 0.5)}  p99 {pct(sink.recent, 0.99)}  max {pct(sink.recent, 1.0)}")
    lines.append(f"sink on the Trio thread {sink.encode_seconds / seconds * 100:9.1f} %  (longest stretch {sink.encode_max_s * 1000:.2f} ms)")
    if remote is not None:
        rs = remote.remote_statistics()
        lines.append(f"reader on the Trio thread {rs.apply_seconds / seconds * 100:7.1f} %  (longest stretch {rs.apply_max_s * 1000:.2f} ms)")
        lines.append(f"published -> consumer  p50 {pct(rs.recent, 0.5)}  p99 {pct(rs.recent, 0.99)}  "
                     f"({rs.entries} entries read, {rs.gaps} gaps)")
    print("\n".join(lines))


async def test_latency_with_a_fake_venue(nursery, redis_server):
    symbols = [f"S{i}USDT" for i in range(10)]
    fake = await nursery.start(FakeBinanceSpot(symbols, rate=200).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url, depth=50, snapshot_every=100))
    async with open_books(cfg) as books, open_remote_books(redis_server.url) as remote:
        with trio.fail_after(15):
            await remote.wait_live(fake.venue_id)
        sink = books.store.sinks["redis"]
        await trio.sleep(0.5)  # the consumer catches up with what was published before it found the books
        sink.recent.clear()
        remote.remote_statistics().recent.clear()
        started, frames0, msgs0 = trio.current_time(), books.statistics()[fake.venue_id].frames, sink.messages
        await trio.sleep(3.0)
        elapsed = trio.current_time() - started
        report("fake binance_spot, 10 books x 200 events/s, depth 50", elapsed, sink, remote,
               changes=books.statistics()[fake.venue_id].frames - frames0)
        assert sink.messages > msgs0 and sink.errors == 0
        for s in symbols:
            await converge_exact(remote, fake, s)
        assert remote.remote_statistics().gaps == 0


async def test_saturated_publisher_stays_exact(nursery, redis_server):
    """200 books changed as fast as one Trio task can: the sink conflates, the writer
    (standing in for the feeds) is never held up by Redis, and a consumer that reads the
    streams afterwards ends with every book equal to its source."""
    rng = random.Random(7)
    store = BookStore([("bench", f"B{i}") for i in range(200)])
    books = []
    for e in store.entries():
        book = OrderBook(400)
        book.apply([(f"{1000 - k}.{rng.randrange(100):02d}", f"{rng.randrange(1, 999)}.5") for k in range(1, 80)],
                   [(f"{1001 + k}.{rng.randrange(100):02d}", f"{rng.randrange(1, 999)}.5") for k in range(1, 80)])
        store.publish(e.venue, e.symbol, book)
        books.append((e, book))
    store.set_state("bench", [e.symbol for e, _ in books], BookState.LIVE)
    cfg = RedisSinkConfig(url=redis_server.url, depth=50, snapshot_every=100)
    sink = await nursery.start(run_redis_sink, cfg, store, "")
    await wait_for(lambda: sink.connected and sink.snapshots >= 200 and not sink.pending, what="first snapshots")
    sink.recent.clear()
    msgs0, snaps0, upd0 = sink.messages, sink.snapshots, sink.updates
    changes, loop_max = 0, 0.0
    started = trio.current_time()
    with trio.move_on_after(3.0):
        while True:
            t0 = trio.current_time()
            for _ in range(50):
                e, book = books[rng.randrange(len(books))]
                k = rng.randrange(1, 60)
                if rng.random() < 0.5:
                    book.apply([(f"{1000 - k}.{rng.randrange(100):02d}", f"{rng.randrange(0, 999)}.5")], [])
                else:
                    book.apply([], [(f"{1001 + k}.{rng.randrange(100):02d}", f"{rng.randrange(0, 999)}.5")])
                store.touched(e, changes, None)
                changes += 1
            await trio.sleep(0)
            loop_max = max(loop_max, trio.current_time() - t0)
    elapsed = trio.current_time() - started
    report("synthetic: 200 books, one task changing them flat out, depth 50", elapsed, sink, changes=changes)
    print(f"longest writer step    {loop_max * 1000:.2f} ms (50 changes + one checkpoint; the sink shares this thread)")
    print(f"conflation             {changes} changes -> {sink.updates - upd0} updates + {sink.snapshots - snaps0} snapshots")
    assert sink.messages > msgs0 and sink.errors == 0
    await wait_for(lambda: not sink.pending, what="the sink to drain")
    async with open_remote_books(redis_server.url) as remote:
        with trio.fail_after(15):
            await remote.wait_live("bench")
        for e, book in books:
            want = (tuple(book.top_bids(50)), tuple(book.top_asks(50)))
            await wait_for(lambda: (remote.view("bench", e.symbol).bids, remote.view("bench", e.symbol).asks) == want,
                           what=f"{e.symbol} to match")
        assert remote.remote_statistics().gaps == 0
