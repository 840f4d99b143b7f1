"""Sharding (deterministic, complete, disjoint) and consolidated cross-venue depth."""

from __future__ import annotations

import httpx
import trio

from trio_books import load_config_text
from trio_books.config import ConfigError, shard_of
from trio_books.runner import build_store, run_venues
from trio_books.serve.app import build_app, serve_http
from trio_books.testing import FakeBinanceFutures, FakeBinanceSpot
from trio_books.testing.harness import converge

import pytest

CONFIG = """
[venues.binance_spot]
symbols = [{spot}]
[venues.binance_futures]
symbols = [{fut}]
"""


def config(shard: str = "") -> str:
    spot = ", ".join(f'"S{i}USDT"' for i in range(40))
    fut = ", ".join(f'"F{i}USDT"' for i in range(40))
    head = f'[service]\nshard = "{shard}"\n' if shard else ""
    return head + CONFIG.format(spot=spot, fut=fut)


def pairs(cfg) -> set[tuple[str, str]]:
    return {(v, s) for v, vc in cfg.enabled_venues() for s in vc.symbols}


def test_shards_cover_every_pair_exactly_once():
    everything = pairs(load_config_text(config()))
    shards = [pairs(load_config_text(config(f"{k}/3"))) for k in (1, 2, 3)]
    assert set().union(*shards) == everything
    assert sum(len(s) for s in shards) == len(everything)
    assert all(len(s) > 10 for s in shards)  # spread, not all in one
    assert shards[0] == pairs(load_config_text(config("1/3")))  # deterministic
    # pinned: a pair's shard never changes between releases, processes or hosts (crc32 of "venue:symbol")
    assert [shard_of("binance_spot", "BTCUSDT", n) for n in (2, 3, 4, 7)] == [1, 2, 1, 5]
    assert [shard_of("okx_spot", "BTC-USDT", n) for n in (2, 3, 4, 7)] == [1, 2, 1, 3]


@pytest.mark.parametrize("bad", ["0/2", "3/2", "x", "1/", "1/0"])
def test_bad_shard_is_one_line(bad):
    with pytest.raises(ConfigError, match="service.shard: expected"):
        load_config_text(config(bad))


async def test_consolidated_merges_live_books_and_names_venues(nursery):
    spot = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=20, seed=1).serve)
    fut = await nursery.start(FakeBinanceFutures(["BTCUSDT"], rate=20, seed=2).serve)
    cfg = load_config_text('[service]\nshard = "1/1"\n' + spot.config_toml(depth=50) + fut.config_toml(depth=50))
    store = build_store(cfg)
    binds = await nursery.start(serve_http, build_app(store), "127.0.0.1", 0)
    nursery.start_soon(run_venues, cfg, store)
    async with httpx.AsyncClient(base_url=binds[0]) as http:
        with trio.fail_after(10):
            while (await http.get("/consolidated/BTC-USD?markets=spot,perp")).status_code != 200 or \
                    len((await http.get("/consolidated/BTC-USD?markets=spot,perp")).json()["venues"]) < 2:
                await trio.sleep(0.05)
        spot.paused = fut.paused = True
        for fake, vid in ((spot, "binance_spot"), (fut, "binance_futures")):  # the service has every update applied
            await converge(lambda fake=fake, vid=vid: (store.view(vid, "BTCUSDT", 10).bids, store.view(vid, "BTCUSDT", 10).asks),
                           fake, "BTCUSDT", n=10)
        spot_only = (await http.get("/consolidated/BTC-USD")).json()  # market types stay apart by default
        assert [v["venue"] for v in spot_only["venues"]] == ["binance_spot"] and spot_only["markets"] == ["spot"]
        assert (await http.get("/consolidated/BTC-USD?markets=spot,options")).status_code == 400
        body = (await http.get("/consolidated/BTC-USD?depth=10&markets=spot,perp")).json()
        assert {v["venue"] for v in body["venues"]} == {"binance_spot", "binance_futures"}
        from decimal import Decimal

        prices = [Decimal(p) for p, _, _ in body["bids"]]
        assert prices == sorted(prices, reverse=True) and len(body["bids"]) == 10
        want = sorted([(Decimal(p), p, q, "binance_spot") for p, q in spot.top("BTCUSDT", 10)[0]]
                      + [(Decimal(p), p, q, "binance_futures") for p, q in fut.top("BTCUSDT", 10)[0]], key=lambda x: -x[0])[:10]
        assert [(p, q) for _, p, q, _ in want] == [(p, q) for p, q, _ in body["bids"]]
        assert (await http.get("/consolidated/ETH-USD")).status_code == 404
        assert (await http.get("/consolidated/???")).status_code == 400
        health = (await http.get("/health")).json()
        assert health["shard"] == "1/1"
        assert 'trio_books_shard_info{shard="1/1"} 1.0' in (await http.get("/metrics")).text
