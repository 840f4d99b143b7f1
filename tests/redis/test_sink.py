"""The Redis Streams sink and the remote consumer against a real redis-server."""

from __future__ import annotations

import orjson
import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.remote import open_remote_books
from trio_books.sinks.redis import INDEX_KEY, publisher_key, stream_keys
from trio_books.testing import FakeBinanceSpot

from .helpers import converge_exact, is_live, sink_toml, wait_for

VENUE = "binance_spot"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


async def test_remote_books_equal_truth(nursery, redis_server):
    fake = await nursery.start(FakeBinanceSpot(SYMBOLS, rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2)
                           + sink_toml(redis_server.url, depth=50, snapshot_every=20))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        stats = books.store.sinks["redis"]
        async with open_remote_books(redis_server.url) as remote:
            with trio.fail_after(10):
                await remote.wait_live(VENUE)
            assert sorted(remote.books()) == sorted((VENUE, s) for s in SYMBOLS)
            for s in SYMBOLS:
                await converge_exact(remote, fake, s)
            # conflated updates, like open_books
            seqs = []
            async for view in remote.updates(VENUE, "BTCUSDT", depth=5):
                seqs.append(view.seq)
                assert view.state is BookState.LIVE and len(view.bids) == 5
                if len(seqs) == 3:
                    break
            assert seqs == sorted(seqs) and len(set(seqs)) == 3
            rstats = remote.statistics()[VENUE]
            assert rstats.state == "live" and rstats.frames > 0 and rstats.books == {s: "live" for s in SYMBOLS}
            assert remote.remote_statistics().gaps == 0
            await trio.sleep(0.5)  # some traffic
            for s in SYMBOLS:
                await converge_exact(remote, fake, s)

            # the venue drops: the remote book is not live either, then recovers to the truth
            await fake.drop()
            with trio.fail_after(10):
                await remote.wait_state(VENUE, "BTCUSDT", BookState.STALE)
                await remote.wait_live(VENUE)
            for s in SYMBOLS:
                await converge_exact(remote, fake, s)
        assert stats.connected and stats.errors == 0 and stats.outages == 0
        assert stats.snapshots >= 4 * len(SYMBOLS) and stats.updates >= 20

        # the documented layout
        client = redis_server.client()
        ukey, skey = stream_keys(VENUE, "BTCUSDT")
        assert ukey == "books:binance_spot:BTCUSDT:updates" and skey == "books:binance_spot:BTCUSDT:snapshots"
        index = {k: orjson.loads(v) for k, v in client.hgetall(INDEX_KEY).items()}
        assert index["binance_spot:BTCUSDT"]["updates"] == ukey
        assert client.exists(publisher_key(stats.publisher)) == 1
        assert client.xlen(skey) <= 5
        (sid, snap), = client.xrevrange(skey, count=1)
        assert snap["type"] == "snapshot" and snap["state"] in ("live", "stale", "syncing")
        (uid, same), = client.xrange(ukey, snap["uid"], snap["uid"])
        assert same == {k: v for k, v in snap.items() if k != "uid"}
        entries = client.xrange(ukey)
        seqs = [int(f["seq"]) for _, f in entries]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no holes
        for _, f in entries:
            for side in ("bids", "asks"):
                for price, qty in orjson.loads(f[side]):
                    assert type(price) is str and type(qty) is str  # exact decimal text
        client.close()
    # the sink retired its heartbeat key on the way out
    client = redis_server.client()
    assert client.exists(publisher_key(stats.publisher)) == 0
    client.close()


async def test_redis_outage_is_counted_and_recovered(nursery, redis_server):
    fake = await nursery.start(FakeBinanceSpot(SYMBOLS, rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url, depth=50, snapshot_every=20))
    async with open_books(cfg) as books, open_remote_books(redis_server.url) as remote:
        stats = books.store.sinks["redis"]
        with trio.fail_after(10):
            await remote.wait_live(VENUE)
        for s in SYMBOLS:
            await converge_exact(remote, fake, s)
        published = stats.messages

        redis_server.kill()  # mid-stream, every stream is lost
        await wait_for(lambda: stats.outages == 1 and not stats.connected, what="the sink to count the outage")
        with trio.fail_after(10):
            await remote.wait_state(VENUE, "BTCUSDT", BookState.STALE)  # the consumer says so too
        await trio.sleep(0.5)  # the feeds keep running meanwhile
        assert books.statistics()[VENUE].state == "live"
        for s in SYMBOLS:
            await converge_exact(books, fake, s)

        await redis_server.restart()  # same port, empty
        await wait_for(lambda: stats.connected, what="the sink to reconnect")
        with trio.fail_after(10):
            await remote.wait_live(VENUE)
        for s in SYMBOLS:
            await converge_exact(remote, fake, s)
        assert stats.outages == 1 and stats.errors >= 1 and stats.outage_snapshots >= len(SYMBOLS)
        assert stats.messages > published and "ConnectionError" in (stats.last_error or "")
        rs = remote.remote_statistics()
        assert rs.outages == 1 and rs.connected
        assert remote.statistics()[VENUE].reconnects == 1


async def test_sink_starts_while_redis_is_down(nursery, stopped_redis_server):
    server = stopped_redis_server
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(server.url))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)  # Redis never holds the books back
        stats = books.store.sinks["redis"]
        await wait_for(lambda: stats.errors >= 2, what="failed connection attempts")
        assert stats.outages == 1 and not stats.connected and stats.messages == 0
        await server.restart()
        await wait_for(lambda: stats.connected and stats.snapshots >= 1, what="the first publish")
        async with open_remote_books(server.url, books=[(VENUE, "BTCUSDT")]) as remote:
            with trio.fail_after(10):
                await remote.wait_live(VENUE, "BTCUSDT")
            await converge_exact(remote, fake, "BTCUSDT")


async def test_consumer_waits_for_redis_then_follows(nursery, stopped_redis_server):
    server = stopped_redis_server
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(server.url))
    async with open_books(cfg):
        with trio.fail_after(5):
            async with open_remote_books(server.url, discover_timeout=0.3) as remote:
                assert remote.books() == []  # nothing known yet, entering did not hang
                nursery.start_soon(server.restart)
                with trio.fail_after(10):
                    await remote.wait_live(VENUE, "BTCUSDT")  # waits for discovery, then live
                await converge_exact(remote, fake, "BTCUSDT")
                assert remote.remote_statistics().errors >= 1


async def test_sequence_gap_rereads_latest_snapshot(nursery, redis_server):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=100).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url, snapshot_every=5))
    async with open_books(cfg) as books, open_remote_books(redis_server.url) as remote:
        with trio.fail_after(10):
            await remote.wait_live(VENUE)
        stats = books.store.sinks["redis"]
        ukey, _ = stream_keys(VENUE, "BTCUSDT")
        client = redis_server.client()
        (_, last), = client.xrevrange(ukey, count=1)
        # an update from the future: whoever reads it has missed messages
        client.xadd(ukey, {"type": "update", "seq": str(int(last["seq"]) + 1000), "publisher": stats.publisher,
                           "bids": '[["1.00","1.000"]]', "asks": "[]"})
        client.close()
        await wait_for(lambda: remote.remote_statistics().gaps >= 1, what="the gap to be seen")
        assert remote.statistics()[VENUE].failures["gap"] == 1
        # the latest snapshot is older than the hole: the book waits for the next one, not live meanwhile
        with trio.fail_after(10):
            await remote.wait_live(VENUE)
        await converge_exact(remote, fake, "BTCUSDT")  # the bogus level never made it into the book
        assert remote.remote_statistics().gaps == 1  # seen once, not again and again


async def test_publisher_gone_makes_books_stale(nursery, redis_server):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url))
    async with open_remote_books(redis_server.url, books=[(VENUE, "BTCUSDT")]) as remote:
        assert remote.state(VENUE, "BTCUSDT") is BookState.SYNCING
        async with open_books(cfg):
            with trio.fail_after(10):
                await remote.wait_live(VENUE, "BTCUSDT")
            await converge_exact(remote, fake, "BTCUSDT")
        # the publishing instance stopped: the consumer must not go on serving its last book
        with trio.fail_after(5):
            await remote.wait_state(VENUE, "BTCUSDT", BookState.STALE)
        assert not is_live(remote, VENUE, "BTCUSDT") and remote.remote_statistics().publishers_lost == 1
        async with open_books(cfg):  # a new instance (a new publisher id) takes over
            with trio.fail_after(10):
                await remote.wait_live(VENUE, "BTCUSDT")
            await converge_exact(remote, fake, "BTCUSDT")
            assert remote.remote_statistics().publisher_changes >= 1


async def test_pending_queue_overflow_publishes_snapshots(nursery, redis_server):
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    fake = await nursery.start(FakeBinanceSpot(symbols, rate=100).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url, queue=1))
    async with open_books(cfg) as books, open_remote_books(redis_server.url) as remote:
        stats = books.store.sinks["redis"]
        with trio.fail_after(10):
            await remote.wait_live(VENUE)
        await wait_for(lambda: stats.overflows > 10, what="overflows")
        for s in symbols:
            await converge_exact(remote, fake, s)
        assert stats.pending_high_water == 1 and remote.remote_statistics().gaps == 0
