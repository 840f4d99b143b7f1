"""The HTTP API, /metrics and the /ws stream, in process over loopback."""

from __future__ import annotations

import httpx
import pytest
import orjson
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from trio_books import load_config_text
from trio_books.book import OrderBook
from trio_books.runner import build_store, run_venues
from trio_books.serve.app import build_app, serve_http
from trio_books.testing import FakeBinanceSpot

VENUE = "binance_spot"


async def start_service(nursery, fake, **extra):
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.1, backoff_cap=0.2, **extra))
    store = build_store(cfg)
    binds = await nursery.start(serve_http, build_app(store), "127.0.0.1", 0)
    nursery.start_soon(run_venues, cfg, store)
    base = binds[0]
    return store, base


async def wait_live(store, timeout=10):
    from trio_books.model import BookState

    with trio.fail_after(timeout):
        while not all(e.state is BookState.LIVE for e in store.entries()):
            await store.wait_change()


async def test_health_venues_books_and_metrics(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50).serve)
    fake.snapshot_delay = 0.5  # every snapshot (so every way to live) takes 0.5 s: the first request sees none
    store, base = await start_service(nursery, fake)
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/health")).status_code == 503  # nothing live yet
        await wait_live(store)
        health = (await http.get("/health")).json()
        assert health["status"] == "ok"
        v = health["venues"][VENUE]
        assert v["state"] == "live" and v["connected"] and v["reconnects"] == 0 and v["resyncs"] == 0
        assert v["last_message_age_s"] is not None and v["last_message_age_s"] < 5
        venues = (await http.get("/venues")).json()
        assert venues["venues"][VENUE]["symbols"] == {"BTCUSDT": "live", "ETHUSDT": "live"}
        assert (await http.get("/books/binance_spot/BTCUSDT?depth=0")).status_code == 400
        assert (await http.get("/books/binance_spot/BTCUSDT?depth=abc")).status_code == 400
        assert (await http.get("/nope")).json() == {"error": "not found"}

        fake.skip_next_update("BTCUSDT")
        with trio.fail_after(10):
            while store.venues[VENUE].book_resyncs.get("gap", 0) == 0:
                await trio.sleep(0.02)
        resp = await http.get("/books/binance_spot/BTCUSDT")  # its snapshot takes 0.5 s: not live yet
        assert resp.status_code == 503 and resp.json()["state"] == "stale"
        assert (await http.get("/books/binance_spot/ETHUSDT")).status_code == 200  # its neighbour is unaffected
        venues = (await http.get("/venues")).json()["venues"][VENUE]
        assert venues["symbols"] == {"BTCUSDT": "stale", "ETHUSDT": "live"}
        assert venues["books"]["BTCUSDT"]["resyncs"] == {"gap": 1}
        assert venues["books"]["BTCUSDT"]["error"].startswith("gap: BTCUSDT: gap at")
        assert venues["books"]["ETHUSDT"] == {"state": "live", "resyncs": {}}
        sick = (await http.get("/health")).json()["venues"][VENUE]
        assert sick["book_resyncs"] == {"gap": 1} and sick["books"]["BTCUSDT"] == "stale"
        assert sick["book_errors"]["BTCUSDT"].startswith("gap: BTCUSDT")
        text = (await http.get("/metrics")).text
        assert 'trio_books_book_error_info{error="BTCUSDT: gap at' in text and 'reason="gap",symbol="BTCUSDT"' in text
        await wait_live(store)

        text = (await http.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        assert samples[("trio_books_attempt_failures_total", (("reason", "gap"), ("venue", VENUE)))] == 0
        assert samples[("trio_books_resyncs_total", (("reason", "gap"), ("venue", VENUE)))] == 1
        assert samples[("trio_books_book_resyncs_total", (("reason", "gap"), ("symbol", "BTCUSDT"), ("venue", VENUE)))] == 1
        assert samples[("trio_books_reconnects_total", (("venue", VENUE),))] == 0
        assert 0 < samples[("trio_books_frames_total", (("venue", VENUE),))] <= store.venues[VENUE].frames  # still streaming
        assert samples[("trio_books_book_state", (("state", "live"), ("symbol", "BTCUSDT"), ("venue", VENUE)))] == 1
        assert samples[("trio_books_channel_capacity", (("venue", VENUE),))] == 5000
        assert samples[("trio_books_apply_latency_seconds_count", (("venue", VENUE),))] > 0
        assert ("trio_books_book_age_seconds", (("symbol", "ETHUSDT"), ("venue", VENUE))) in samples
        assert samples[("trio_books_http_requests_total", ())] >= 8
        for reason in ("unrequested", "before_snapshot", "already_applied"):  # always exported, from 0
            assert ("trio_books_events_ignored_total", (("reason", reason), ("venue", VENUE))) in samples
        assert set(health["venues"][VENUE]["ignored"]) <= {"unrequested", "before_snapshot", "already_applied"}


class StreamClient:
    """Applies /ws messages to a local book, checking the per-subscription seq."""

    def __init__(self) -> None:
        self.book = OrderBook()
        self.seq = 0
        self.snapshots = 0
        self.states: list[str] = []

    def apply(self, msg: dict) -> None:
        if msg["type"] == "error":
            raise AssertionError(msg)
        assert msg["seq"] == self.seq + 1, (msg["seq"], self.seq)
        self.seq = msg["seq"]
        if msg["type"] == "status":
            self.states.append(msg["state"])
        elif msg["type"] == "snapshot":
            self.snapshots += 1
            self.book.apply_snapshot([tuple(x) for x in msg["bids"]], [tuple(x) for x in msg["asks"]])
        elif msg["type"] == "update":
            self.book.apply([tuple(x) for x in msg["bids"]], [tuple(x) for x in msg["asks"]])


async def test_stream_fast_and_slow_clients_end_with_the_true_book(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=100, changes_per_event=5).serve)
    store, base = await start_service(nursery, fake)
    await wait_live(store)
    url = base.replace("http://", "ws://") + "/ws"
    fast, slow = StreamClient(), StreamClient()
    enough = trio.Event()

    def at_truth(client: StreamClient) -> bool:
        want_bids, want_asks = fake.top("BTCUSDT", 20)
        return client.book.top_bids(20) == want_bids and client.book.top_asks(20) == want_asks

    async def run(client: StreamClient, delay: float, done: trio.Event):
        async with open_websocket_url(url) as ws:
            await ws.send_message(orjson.dumps({"op": "subscribe", "venue": VENUE, "symbol": "BTCUSDT", "depth": 20}).decode())
            while not (fake.paused and at_truth(client)):  # the fake paused and everything was delivered
                with trio.move_on_after(0.05):  # then look at the condition again
                    client.apply(orjson.loads(await ws.get_message()))
                if client.seq >= 50:
                    enough.set()
                if delay:
                    await trio.sleep(delay)  # a slower reader
        done.set()

    fast_done, slow_done = trio.Event(), trio.Event()
    nursery.start_soon(run, fast, 0, fast_done)
    nursery.start_soon(run, slow, 0.01, slow_done)
    with trio.fail_after(15):
        await enough.wait()  # traffic flowed: at least 50 messages to one of them
    fake.paused = True
    with trio.fail_after(15):  # a paused fake sends nothing more: both clients reach its book
        await fast_done.wait()
        await slow_done.wait()
    want_bids, want_asks = fake.top("BTCUSDT", 20)
    for client in (fast, slow):
        assert client.book.top_bids(20) == want_bids
        assert client.book.top_asks(20) == want_asks
        assert client.snapshots >= 1 and client.states[0] == "live"


async def test_a_slow_subscriber_is_conflated_not_queued(autojump_clock):
    """Drive the hub's follower directly (virtual time) with a send that takes 50 ms while the
    book changes 200 times: far fewer messages, and they still add up to the book."""
    from trio_books.model import BookState
    from trio_books.serve.metrics import ClientCounts
    from trio_books.serve.stream import StreamHub
    from trio_books.store import BookStore

    store = BookStore([(VENUE, "X")])
    book = OrderBook(100)
    book.apply([("1.00", "1")], [("2.00", "1")])
    store.publish(VENUE, "X", book)
    store.set_state(VENUE, ["X"], BookState.LIVE)
    client = StreamClient()

    async def slow_send(msg):
        client.apply(msg)
        await trio.sleep(0.05)

    hub = StreamHub(store, ClientCounts())
    entry = store.entry(VENUE, "X")
    async with trio.open_nursery() as n:
        scope = trio.CancelScope()
        n.start_soon(hub._follow, scope, VENUE, "X", 20, "book", slow_send)
        for i in range(200):
            book.apply([(f"1.{i % 50:02d}", str(i + 1))], [(f"2.{i % 30:02d}", "0" if i % 7 == 0 else str(i))])
            store.touched(entry, i, None)
            await trio.sleep(0.001)
        await trio.sleep(0.2)
        scope.cancel()
    assert client.seq < 60  # conflated: ~4 messages per 200 ms, not 200
    assert client.book.top_bids(20) == book.top_bids(20)
    assert client.book.top_asks(20) == book.top_asks(20)


async def test_stream_rejects_bad_requests_clearly(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=10).serve)
    store, base = await start_service(nursery, fake)
    url = base.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url) as ws:
        for bad, want in [
            ("nope", "not valid JSON"),
            ("[1]", "expected a JSON object"),
            ('{"op":"dance"}', 'op must be "subscribe"'),
            ('{"op":"subscribe","venue":"binance_spot","symbol":"XXX"}', "unknown symbol"),
            ('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","depth":0}', "depth must be"),
            ('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","kind":"all"}', "kind must be"),
            ("x" * 5000, "message too large"),
            (b"\x00binary", "expected text frames"),  # answered, and the connection stays open
            ('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","depth":5001}', "depth must be an integer from 1 to 5000"),
        ]:
            await ws.send_message(bad)
            msg = orjson.loads(await ws.get_message())
            assert msg["type"] == "error" and want in msg["error"], (bad[:40], msg)


async def test_stream_top_of_book(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=50).serve)
    store, base = await start_service(nursery, fake)
    await wait_live(store)
    url = base.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url) as ws:
        await ws.send_message('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","kind":"top"}')
        status = orjson.loads(await ws.get_message())
        assert status["type"] == "status" and status["state"] == "live"
        for _ in range(5):  # the top moves while the fake runs
            last = orjson.loads(await ws.get_message())
            assert last["type"] == "top"
        fake.paused = True
        bids, asks = fake.top("BTCUSDT", 1)
        with trio.fail_after(10):  # until the latest top sent is the fake's (nothing follows a paused fake)
            while (last["bid"], last["ask"]) != (list(bids[0]), list(asks[0])):
                with trio.move_on_after(0.05):  # then look again
                    last = orjson.loads(await ws.get_message())
                    assert last["type"] == "top"


async def test_stream_client_count_and_inbound_size_are_bounded(nursery, monkeypatch):
    import trio_books.serve.stream as stream_mod
    from trio_websocket import ConnectionClosed

    monkeypatch.setattr(stream_mod, "MAX_CLIENTS", 2)
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=10).serve)
    store, base = await start_service(nursery, fake)
    url = base.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as a, open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as b:
        for ws in (a, b):  # a round trip each: both are counted by the server before c arrives
            await ws.send_message('{"op":"unsubscribe","venue":"binance_spot","symbol":"BTCUSDT"}')
            with trio.fail_after(5):
                assert "not subscribed" in orjson.loads(await ws.get_message())["error"]
        async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as c:
            with pytest.raises(ConnectionClosed) as info:
                with trio.fail_after(5):
                    await c.get_message()
            assert info.value.reason.code == 1013
        # Past the server's 64 KiB message limit, yet small enough to sit in the socket buffers:
        # the server stops reading once the limit is passed, and a client whose unread bytes
        # fill the buffers could never send its close reply (trio-websocket then waits forever).
        await b.send_message("x" * 70_000)
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(5):
                await b.get_message()
        assert info.value.reason.code == 1009


async def test_stream_clients_per_address_are_bounded_and_idle_ones_are_closed(nursery, monkeypatch):
    import trio_books.serve.stream as stream_mod
    from trio_websocket import ConnectionClosed

    monkeypatch.setattr(stream_mod, "MAX_PER_ADDRESS", 2)
    monkeypatch.setattr(stream_mod, "IDLE_TIMEOUT", 1.0)
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=10).serve)
    store, base = await start_service(nursery, fake)
    await wait_live(store)
    url = base.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as a, \
            open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as idle:
        await a.send_message('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","kind":"top"}')
        with trio.fail_after(5):
            assert orjson.loads(await a.get_message())["type"] == "status"
        async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as third:
            with pytest.raises(ConnectionClosed) as info:
                with trio.fail_after(5):
                    await third.get_message()
            assert info.value.reason.code == 1013 and "from 127.0.0.1" in info.value.reason.reason
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(5):
                await idle.get_message()  # never subscribed: closed after IDLE_TIMEOUT
        assert info.value.reason.code == 1008 and "idle" in info.value.reason.reason
        with trio.fail_after(5):  # the subscribed client is never idle
            assert (await a.get_message())


async def test_a_bearer_token_and_an_origin_list_guard_every_route_but_health(nursery):
    from trio_websocket import ConnectionRejected, ConnectionClosed

    from trio_books.config import ServiceConfig

    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=10).serve)
    cfg = load_config_text(fake.config_toml(depth=100))
    store = build_store(cfg)
    service = ServiceConfig(auth_token="s3cret", allowed_origins=("https://desk.example",))
    binds = await nursery.start(serve_http, build_app(store, service=service), "127.0.0.1", 0)
    nursery.start_soon(run_venues, cfg, store)
    await wait_live(store)
    good = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient(base_url=binds[0]) as http:
        assert (await http.get("/health")).status_code == 200  # open: container health checks
        for path in ("/venues", "/books/binance_spot/BTCUSDT", "/metrics", "/consolidated/BTC-USD"):
            resp = await http.get(path)
            assert resp.status_code == 401 and resp.json() == {"error": "a valid bearer token is required"}, path
            assert (await http.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await http.get(path, headers=good)).status_code in (200, 503), path
        resp = await http.get("/venues", headers={**good, "Origin": "https://evil.example"})
        assert resp.status_code == 403 and resp.json() == {"error": "origin not allowed"}
        assert (await http.get("/venues", headers={**good, "Origin": "https://desk.example"})).status_code == 200
    url = binds[0].replace("http://", "ws://") + "/ws"
    with pytest.raises((ConnectionRejected, ConnectionClosed)):
        async with open_websocket_url(url, connect_timeout=5, disconnect_timeout=1) as ws:
            await ws.get_message()
    async with open_websocket_url(url + "?token=s3cret", connect_timeout=5, disconnect_timeout=1) as ws:
        await ws.send_message('{"op":"subscribe","venue":"binance_spot","symbol":"BTCUSDT","kind":"top"}')
        with trio.fail_after(5):
            assert orjson.loads(await ws.get_message())["type"] == "status"


async def test_metrics_can_be_left_open_for_the_scraper():
    from trio_books.config import ServiceConfig

    store = build_store(load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n'))
    app = build_app(store, service=ServiceConfig(auth_token="s3cret", metrics_auth=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/venues")).status_code == 401
