"""Two shards of one deployment publish to one Redis; one remote consumer sees every book."""

from __future__ import annotations

import trio

from trio_books import load_config_text
from trio_books.config import shard_of
from trio_books.runner import build_store, open_books
from trio_books.remote import open_remote_books
from trio_books.testing import FakeBinanceFutures, FakeBinanceSpot

from .helpers import converge_exact, sink_toml, wait_for

SPOT = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT"]
FUTURES = ["BTCUSDT", "ETHUSDT", "DOGEUSDT"]


async def test_two_shards_one_consumer(nursery, redis_server):
    spot = await nursery.start(FakeBinanceSpot(SPOT, rate=40, seed=3).serve)
    fut = await nursery.start(FakeBinanceFutures(FUTURES, rate=40, seed=4).serve)
    fakes = {spot.venue_id: spot, fut.venue_id: fut}
    venues = spot.config_toml(depth=100) + fut.config_toml(depth=100)
    sink = sink_toml(redis_server.url, depth=50, snapshot_every=50)
    configs = [load_config_text(f'[service]\nshard = "{k}/2"\n' + venues + sink) for k in (1, 2)]
    everything = {(v, s) for v, f in fakes.items() for s in f.symbols}
    owned = [{(e.venue, e.symbol) for e in build_store(c).entries()} for c in configs]
    assert owned[0] | owned[1] == everything and not owned[0] & owned[1] and all(owned)  # a real split
    assert all(shard_of(v, s, 2) == 1 for v, s in owned[0])

    async with open_books(configs[0]) as shard1, open_books(configs[1]) as shard2:
        stores = [shard1.store, shard2.store]
        assert stores[0] is not stores[1]
        async with open_remote_books(redis_server.url) as remote:
            with trio.fail_after(15):
                for venue, symbol in sorted(everything):
                    await remote.wait_live(venue, symbol)  # discovered from either shard, then live
            assert set(remote.books()) == everything
            await trio.sleep(0.3)
            for venue, symbol in sorted(everything):
                await converge_exact(remote, fakes[venue], symbol)
            for k, store in enumerate(stores):
                stats = store.sinks["redis"]
                assert stats.shard == f"{k + 1}/2" and stats.books == len(owned[k]) and stats.errors == 0
            publishers = {store.sinks["redis"].publisher for store in stores}
            assert len(publishers) == 2
            rs = remote.remote_statistics()
            assert rs.gaps == 0 and rs.books == len(everything)
            # each book follows the shard that owns it
            await wait_for(lambda: all(f.publisher in publishers for f in remote._reader.follows.values()),
                           what="publishers known")
            for f in remote._reader.follows.values():
                k = 0 if (f.venue, f.symbol) in owned[0] else 1
                assert f.publisher == stores[k].sinks["redis"].publisher
