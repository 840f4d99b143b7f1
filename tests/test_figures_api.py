"""/stats, /cost, /consolidated/…/cost, the /ws "stats" kind and the metrics_books
gauges, over loopback against a store whose books the test sets by hand."""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from trio_books import ConfigError, ServiceConfig, load_config_text
from trio_books.book import OrderBook
from trio_books.model import BookState
from trio_books.serve.app import build_app, serve_http
from trio_books.store import BookStore

BOOKS = [("binance_spot", "BTCUSDT"), ("coinbase_spot", "BTC-USD"), ("kraken_spot", "BTC/USD")]


def set_book(store: BookStore, venue: str, symbol: str, bids, asks, update_id: int | None = None) -> None:
    entry = store.entry(venue, symbol)
    if entry.book is None:
        store.publish(venue, symbol, OrderBook())
        store.set_state(venue, [symbol], BookState.LIVE)
    assert entry.book is not None
    entry.book.apply_snapshot(bids, asks)
    store.touched(entry, update_id, None)


async def start(nursery, service: ServiceConfig | None = None) -> tuple[BookStore, httpx.AsyncClient, str]:
    store = BookStore(BOOKS)
    store.add("kraken_spot", "ETH/USD")  # never live
    set_book(store, "binance_spot", "BTCUSDT", [("100.0", "1.5"), ("99.5", "2")], [("101.00", "1"), ("102", "3.25")], 77)
    set_book(store, "coinbase_spot", "BTC-USD", [("101.5", "0.5")], [("103", "2")])  # crossed with binance
    binds = await nursery.start(serve_http, build_app(store, service=service), "127.0.0.1", 0)
    return store, httpx.AsyncClient(base_url=binds[0]), binds[0]


async def test_stats_and_cost_shapes(nursery):
    store, http, _ = await start(nursery)
    async with http:
        stats = (await http.get("/books/binance_spot/BTCUSDT/stats", params={"levels": "2", "bps": "50,100"})).json()
        seq = store.entry("binance_spot", "BTCUSDT").seq
        assert stats["seq"] == seq and stats["update_id"] == 77 and stats["state"] == "live"
        assert stats["best_bid"] == ["100.0", "1.5"] and stats["best_ask"] == ["101.00", "1"]
        assert (stats["mid"], stats["spread"], stats["spread_bps"], stats["micro_price"]) == ("100.5", "1", "99.5025", "100.6")
        assert stats["imbalance"] == {"levels": 2, "value": "-0.096774193548387097"}
        assert stats["depth"]["50"]["bids"] == {"bound": "99.9975", "base": "1.5", "quote": "150", "levels": 1, "complete": True}
        assert stats["depth"]["100"]["bids"]["complete"] is False  # the band reaches past the book's last level
        assert list((await http.get("/books/binance_spot/BTCUSDT/stats")).json()["depth"]) == ["10", "50", "100"]

        cost = (await http.get("/books/binance_spot/BTCUSDT/cost?side=buy&base=2")).json()
        assert cost["seq"] == seq and cost["update_id"] == 77
        assert cost["filled"] == {"base": "2", "quote": "203", "levels": 2}
        assert (cost["avg_price"], cost["worst_price"], cost["slippage_bps"]) == ("101.5", "102", "99.5025")
        quote = (await http.get("/books/binance_spot/BTCUSDT/cost?side=sell&quote=249.5")).json()
        assert quote["filled"] == {"base": "2.5", "quote": "249.5", "levels": 2} and quote["avg_price"] == "99.8"
        deep = (await http.get("/books/binance_spot/BTCUSDT/cost?side=buy&base=4.25000000001")).json()
        assert deep["sufficient"] is False and deep["error"] == "insufficient depth" and deep["avg_price"] is None
        assert deep["available"] == {"base": "4.25", "quote": "432.5", "levels": 2}
        kraken = await http.get("/books/kraken_spot/BTC%2FUSD/cost?side=buy&base=1")
        assert kraken.status_code == 503 and kraken.json()["state"] == "syncing"  # as /books answers

        for path in ["/books/binance_spot/BTCUSDT/cost?side=buy", "/books/binance_spot/BTCUSDT/cost?side=up&base=1",
                     "/books/binance_spot/BTCUSDT/cost?side=buy&base=1&quote=1", "/books/binance_spot/BTCUSDT/cost?side=buy&base=-1",
                     "/books/binance_spot/BTCUSDT/cost?side=buy&base=1e3", "/books/binance_spot/BTCUSDT/cost?side=buy&base=0",
                     "/books/binance_spot/BTCUSDT/stats?levels=0", "/books/binance_spot/BTCUSDT/stats?bps=",
                     "/books/binance_spot/BTCUSDT/stats?bps=10001", "/books/binance_spot/BTCUSDT/stats?bps=" + ",".join(["1"] * 17),
                     "/consolidated/BTC/cost?side=buy&base=1", "/consolidated/BTC-USD/cost?side=buy&base=1&markets=options"]:
            resp = await http.get(path)
            assert resp.status_code == 400 and list(resp.json()) == ["error"] and "\n" not in resp.text, path
        assert (await http.get("/books/nope/X/stats")).status_code == 404
        assert (await http.get("/books/binance_spot/NOPE/cost?side=buy&base=1")).json() == {"error": "unknown symbol 'NOPE' for venue 'binance_spot'"}
        assert (await http.get("/books/binance_spot/BTCUSDT")).json()["seq"] == seq  # /books is still itself


async def test_consolidated_cost_names_each_venue_and_sees_a_crossed_book(nursery):
    store, http, _ = await start(nursery)
    async with http:
        body = (await http.get("/consolidated/BTC-USD/cost?side=buy&base=2.5")).json()
        assert body["crossed"] is True  # coinbase bids 101.5 over binance's ask 101.00
        assert body["venues"] == [{"venue": "binance_spot", "symbol": "BTCUSDT", "seq": store.entry("binance_spot", "BTCUSDT").seq, "update_id": 77},
                                  {"venue": "coinbase_spot", "symbol": "BTC-USD", "seq": store.entry("coinbase_spot", "BTC-USD").seq, "update_id": None}]
        assert body["left_out"] == [{"venue": "kraken_spot", "symbol": "BTC/USD", "state": "syncing"}]
        assert body["filled"] == {"base": "2.5", "quote": "254", "levels": 2}  # 1 @ 101.00 + 1.5 @ 102
        assert body["mid"] == "101.25" and body["worst_price"] == "102"
        assert body["fills"] == [{"venue": "binance_spot", "symbol": "BTCUSDT", "base": "2.5", "quote": "254", "levels": 2, "worst_price": "102"}]
        sell = (await http.get("/consolidated/BTC-USD/cost?side=sell&base=1")).json()
        assert [f["venue"] for f in sell["fills"]] == ["coinbase_spot", "binance_spot"]
        assert sell["filled"]["quote"] == "100.75" and sell["slippage_bps"] == "49.3827"
        small = (await http.get("/consolidated/BTC-USD/cost?side=buy&base=1")).json()
        assert small["avg_price"] == "101" and small["slippage_bps"] == "-24.6914"  # crossed: better than the mid
        too_much = (await http.get("/consolidated/BTC-USD/cost?side=sell&quote=1000000")).json()
        assert too_much["sufficient"] is False and too_much["available"]["levels"] == 3
        none = await http.get("/consolidated/DOGE-USD/cost?side=buy&base=1")
        assert none.status_code == 404 and none.json()["error"] == "no live book for this instrument"
        only_kraken = await http.get("/consolidated/BTC-USD/cost?side=buy&base=1&venues=kraken_spot")
        assert only_kraken.status_code == 503


async def test_stream_stats_are_sent_when_a_figure_changes(nursery):
    store, http, base = await start(nursery)
    await http.aclose()
    url = base.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url) as ws:
        async def get() -> dict:
            with trio.fail_after(5):
                return orjson.loads(await ws.get_message())

        await ws.send_message(orjson.dumps({"op": "subscribe", "venue": "binance_spot", "symbol": "BTCUSDT", "kind": "stats",
                                            "levels": 1, "bps": ["50"]}).decode())
        assert (await get())["type"] == "status"
        first = await get()
        assert first["type"] == "stats" and first["seq"] == 2 and first["mid"] == "100.5" and list(first["depth"]) == ["50"]
        assert first["update_id"] == 77 and first["version"] == store.entry("binance_spot", "BTCUSDT").seq
        entry = store.entry("binance_spot", "BTCUSDT")
        entry.book.apply([("90", "5")], [])  # past every band and beyond the top level: no figure moves
        store.touched(entry, 78, None)
        entry.book.apply([("100.0", "2")], [])  # the best bid's size: micro-price, imbalance, depth move
        store.touched(entry, 79, None)
        second = await get()
        assert second["seq"] == 3 and second["update_id"] == 79 and second["micro_price"] == "100.666666666666666667"
        store.set_state("binance_spot", ["BTCUSDT"], BookState.STALE)
        assert (await get())["state"] == "stale"
        store.set_state("binance_spot", ["BTCUSDT"], BookState.LIVE)
        assert (await get())["state"] == "live"
        again = await get()  # after an outage the figures come again, even unchanged
        assert again["type"] == "stats" and again["seq"] == 6 and again["micro_price"] == second["micro_price"]
        for bad, want in [({"kind": "stats", "levels": 0}, "levels must be"), ({"kind": "stats", "bps": "x"}, "bps: each band"),
                          ({"kind": "stats", "bps": [1.5]}, "bps: each band")]:
            await ws.send_message(orjson.dumps({"op": "subscribe", "venue": "coinbase_spot", "symbol": "BTC-USD", **bad}).decode())
            msg = await get()
            assert msg["type"] == "error" and want in msg["error"], msg


async def test_metrics_books_gauges_and_their_config_key(nursery):
    service = ServiceConfig(metrics_books=("binance_spot:BTCUSDT", "kraken_spot:ETH/USD"))
    _, http, _ = await start(nursery, service)
    async with http:
        text = (await http.get("/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples if s.name.startswith("trio_books_book_")}
    book = (("symbol", "BTCUSDT"), ("venue", "binance_spot"))
    assert samples[("trio_books_book_mid", book)] == 100.5 and samples[("trio_books_book_spread_bps", book)] == 99.5025
    assert samples[("trio_books_book_depth_quote", (("bps", "50"), ("side", "bids"), *book))] == 150
    assert not any(labels and ("symbol", "ETH/USD") in labels and name == "trio_books_book_mid" for name, labels in samples)

    toml = '[service]\nmetrics_books = ["{}"]\n[venues.kraken_spot]\nsymbols = ["BTC/USD"]\n'
    assert load_config_text(toml.format("kraken_spot:BTC/USD")).service.metrics_books == ("kraken_spot:BTC/USD",)
    import argparse

    from trio_books.cli import apply_overrides

    env = {"TRIO_BOOKS_METRICS_BOOKS": " kraken_spot:BTC/USD"}
    assert apply_overrides(load_config_text(toml.format("kraken_spot:BTC/USD")), argparse.Namespace(), env).service.metrics_books \
        == ("kraken_spot:BTC/USD",)
    for bad in ("kraken_spot:ETH/USD", "kraken_spot", "okx_spot:BTC-USDT"):
        with pytest.raises(ConfigError, match=r'^service.metrics_books: "[^"]*" is not "venue:SYMBOL" of a configured book$'):
            load_config_text(toml.format(bad))


async def test_stream_figures_are_computed_once_per_book_state():
    from trio_books.serve.figures import StatsCache, StatsQuery

    store = BookStore(BOOKS)
    set_book(store, "binance_spot", "BTCUSDT", [("100", "1")], [("101", "1")], 1)
    cache = StatsCache(store)
    first = cache.figures("binance_spot", "BTCUSDT", StatsQuery())
    assert cache.figures("binance_spot", "BTCUSDT", StatsQuery()) is first  # a second subscriber: no recomputation
    assert cache.figures("binance_spot", "BTCUSDT", StatsQuery(3))["imbalance"]["levels"] == 3
    set_book(store, "binance_spot", "BTCUSDT", [("100", "2")], [("101", "1")], 2)
    assert cache.figures("binance_spot", "BTCUSDT", StatsQuery())["update_id"] == 2
    assert cache.figures("kraken_spot", "BTC/USD", StatsQuery()) is None  # not live
