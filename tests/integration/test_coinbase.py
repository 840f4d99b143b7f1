"""Coinbase Advanced Trade against its fake over real loopback sockets, in process."""

from __future__ import annotations

import attrs
import orjson
import pytest
import trio

from tests.capture import records
from trio_books import BookState, load_config_text, open_books
from trio_books import backoff as backoff_module
from trio_books.testing import FakeCoinbase
from trio_books.testing.harness import assert_exact_backoff, converge, view_top
from trio_books.venues import coinbase as coinbase_module

VENUE = "coinbase_spot"
PRODUCTS = ["BTC-USD", "ETH-USD"]
FAST = {"backoff_base": 0.1, "backoff_cap": 0.2}
CAPTURE = "coinbase/coinbase_at_level2_heartbeats_2sym_20260809_cryptofeed.capture.jsonl.gz"


class TimedFake(FakeCoinbase):
    """Notes the (trio clock) time of every accepted connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connected_at: list[float] = []

    async def handle(self, client) -> None:
        self.connected_at.append(trio.current_time())
        await super().handle(client)


async def start(nursery, products=PRODUCTS, **kw) -> TimedFake:
    kw.setdefault("rate", 50)
    return await nursery.start(TimedFake(products, **kw).serve)


def config(fake, **extra):
    for k, v in FAST.items():
        extra.setdefault(k, v)
    return load_config_text(fake.config_toml(**extra))


async def wait_failure(books, reason: str, at_least: int = 1, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while books.statistics()[VENUE].failures.get(reason, 0) < at_least:
            await trio.sleep(0.01)


async def converge_all(books, fake, n: int = 20, timeout: float = 10) -> None:
    for s in fake.symbols:
        await converge(view_top(books, VENUE, s, n), fake, s, n=n, timeout=timeout)


async def test_live_equals_truth(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake, n=200)  # the whole book: nothing truncated
        await fake.send_unexpected()  # a channel nobody asked for: counted, ignored
        await fake.burst(20)
        await trio.sleep(1.2)  # at least one heartbeat
        await converge_all(books, fake, n=200)
        sent = [orjson.loads(m) for m in fake.clients[0].received]
        assert sent == [{"type": "subscribe", "product_ids": PRODUCTS, "channel": "level2"},
                        {"type": "subscribe", "channel": "heartbeats"}]
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        assert fake.heartbeats_sent >= 1 and fake.events_sent >= 40
        view = books.view(VENUE, "BTC-USD")
        assert view.update_id is not None and view.update_id < fake.clients[0].state["seq"]
        assert view.exchange_ts is not None and all(type(p) is str and type(q) is str for p, q in view.bids)


async def test_gap_in_the_connection_counter_resyncs_to_truth(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.skip_next_update("ETH-USD")
        await wait_failure(books, "gap")
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake)
        stats = books.statistics()[VENUE]
        assert stats.failures == {"gap": 1} and stats.reconnects == 1
        assert "sequence_num" in stats.last_error and fake.connections_accepted == 2


async def test_drop_and_malformed_frame_recover(nursery):
    fake = await start(nursery)
    async with open_books(config(fake)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await fake.drop()
        await wait_failure(books, "close")
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        fake.send_malformed()
        await wait_failure(books, "bad_frame")
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        await converge_all(books, fake)
        stats = books.statistics()[VENUE]
        assert stats.failures == {"close": 1, "bad_frame": 1} and fake.connections_accepted == 3


async def test_subscribe_rejection_is_rejected_with_growing_backoff(nursery, autojump_clock, pacer, monkeypatch):
    # the top of every jitter range, so the growth shows exactly
    real = backoff_module.backoff_delay
    monkeypatch.setattr("trio_books.supervise.backoff_delay", lambda failures, **kw: real(failures, rng=lambda: 1.0, **kw))
    fake = await start(nursery)
    fake.reject_subscribe = True  # {"type":"error","message":"authentication failure"}
    async with open_books(config(fake, backoff_base=1.0, backoff_cap=8.0)) as books:
        await wait_failure(books, "rejected", at_least=5, timeout=60)
        stats = books.statistics()[VENUE]
        assert set(stats.failures) == {"rejected"} and "venue error: authentication failure" in stats.last_error
        assert all(books.state(VENUE, s) is not BookState.LIVE for s in PRODUCTS)
        assert_exact_backoff(fake.connected_at)
        fake.reject_subscribe = False
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


async def test_silence_ends_the_attempt_after_60_s_without_heartbeats(nursery, autojump_clock, pacer):
    fake = await start(nursery, rate=5)
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        await trio.sleep(65)  # heartbeats (1/s) carry a healthy connection past the watchdog
        assert books.statistics()[VENUE].failures == {}
        fake.silence()  # the zombie: open, nothing sent, not even heartbeats
        silenced = trio.current_time()
        with trio.fail_after(120):
            await books.wait_state(VENUE, "BTC-USD", BookState.STALE)
        assert 59.0 <= trio.current_time() - silenced <= 60.5  # the 60 s heartbeat watchdog, virtual time
        await wait_failure(books, "heartbeat")  # counted once the attempt has ended
        stats = books.statistics()[VENUE]
        assert stats.failures == {"heartbeat": 1} and "no heartbeat for 60 s" in stats.last_error
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


async def test_book_data_without_heartbeats_still_trips_the_watchdog(nursery, autojump_clock, pacer):
    fake = await start(nursery, rate=10)
    async with open_books(config(fake)) as books:
        with trio.fail_after(30):
            await books.wait_live(VENUE)
        fake.mute_heartbeats()  # the book keeps streaming; the heartbeats stop
        muted, sent = trio.current_time(), fake.events_sent
        await trio.sleep(50)
        assert books.statistics()[VENUE].failures == {} and fake.events_sent > sent + 400
        await converge_all(books, fake)  # still live, still right
        with trio.fail_after(30):
            await books.wait_state(VENUE, "BTC-USD", BookState.STALE)
        assert 59.0 <= trio.current_time() - muted <= 60.5
        await wait_failure(books, "heartbeat")  # counted once the attempt has ended
        stats = books.statistics()[VENUE]
        assert stats.failures == {"heartbeat": 1} and "no heartbeat for 60 s" in stats.last_error
        with trio.fail_after(60):
            await books.wait_live(VENUE)
        await converge_all(books, fake)


async def test_a_product_left_out_of_the_subscription_reply_is_rejected_alone(nursery, autojump_clock, pacer):
    fake = await start(nursery, rate=5)
    fake.omit_from_subscriptions("ETH-USD")  # as Coinbase does with an unknown product id
    async with open_books(config(fake, rejected_retry=5.0)) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE, "BTC-USD")
            await books.wait_state(VENUE, "ETH-USD", BookState.REJECTED)
        stats = books.statistics()[VENUE]
        assert stats.failures == {} and stats.book_resyncs == {"rejected": 1}
        assert "ETH-USD: left out of the level2 subscriptions ack" in stats.book_errors["ETH-USD"]
        fake.restore_products()
        with trio.fail_after(10):  # retried alone 5 s after the refusal, on the same connection
            await books.wait_live(VENUE, "ETH-USD")
        await converge_all(books, fake)
        retry = [(t, m) for t, m in fake.request_log if m.get("product_ids") == ["ETH-USD"]]
        assert [m for _, m in retry] == [{"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"}]
        assert retry[0][0] - fake.connected_at[0] == pytest.approx(5.0, abs=0.3)
        assert fake.connections_accepted == 1 and books.statistics()[VENUE].failures == {}


async def test_an_unknown_product_in_the_config_is_named(nursery):
    fake = await start(nursery)
    text = fake.config_toml(**FAST).replace('"ETH-USD"', '"ETH-USDX"')
    async with open_books(load_config_text(text)) as books:
        with trio.fail_after(10):
            await books.wait_state(VENUE, "ETH-USDX", BookState.REJECTED)
            await books.wait_live(VENUE, "BTC-USD")
        assert "ETH-USDX: left out of the level2 subscriptions ack" in books.statistics()[VENUE].book_errors["ETH-USDX"]


def captured_snapshot(product: str = "BTC-USD") -> str:
    for rec in records(CAPTURE):
        frame = rec["frame"]
        if frame.startswith('{"channel":"l2_data"') and f'"type":"snapshot","product_id":"{product}"' in frame[:200]:
            return frame
    raise LookupError(product)


@pytest.mark.parametrize("transport", ["wsproto", "trio-websocket"])
async def test_the_captured_5_mb_snapshot_frame_goes_live(nursery, transport):
    raw = captured_snapshot()
    assert len(raw) > 4 * 2**20  # well past trio-websocket's 1 MiB default
    fake = await start(nursery, ["BTC-USD"], rate=0)
    fake.load_snapshot_frame(raw)
    cfg = load_config_text(f'[service]\ntransport = "{transport}"\n' + fake.config_toml(**FAST))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        assert fake.replays_sent == 1  # the captured frame itself, byte for byte but the counter
        view = books.view(VENUE, "BTC-USD", 100_000)
        assert len(view.bids) + len(view.asks) == 46_000
        assert view.bids[0] == ("65083.66", "0.20371215")
        await converge_all(books, fake, n=1000)
        await fake.burst(50)  # updates on top of the captured book
        await converge_all(books, fake, n=1000)
        assert books.statistics()[VENUE].failures == {}


async def test_with_the_default_1_mib_limit_the_snapshot_never_arrives(nursery, monkeypatch):
    small = attrs.evolve(coinbase_module.COINBASE_SPOT, max_message_size=2**20)
    monkeypatch.setattr(coinbase_module, "COINBASE_SPOT", small)  # what get_venue hands out
    fake = await start(nursery, ["BTC-USD"], rate=0)
    fake.load_snapshot_frame(captured_snapshot())
    async with open_books(config(fake)) as books:
        await wait_failure(books, "bad_frame", at_least=2)
        assert "message larger than 1048576 bytes" in books.statistics()[VENUE].last_error
        assert books.state(VENUE, "BTC-USD") is not BookState.LIVE


async def test_the_fake_speaks_the_captured_wire(nursery, autojump_clock, pacer):
    """The fake itself, seen from a bare WebSocket client: one counter from 0 across
    channels, the snapshot before its cumulative ack, 1 Hz heartbeats, the error
    frame for an unknown channel, and the 5 s subscribe deadline."""
    from trio_websocket import ConnectionClosed, open_websocket_url

    fake = await start(nursery, rate=0)
    async with open_websocket_url(fake.ws_url) as ws:
        await ws.send_message('{"type":"subscribe","product_ids":["BTC-USD","NOPE-USD"],"channel":"level2"}')
        await ws.send_message('{"type":"subscribe","channel":"heartbeats"}')
        await ws.send_message('{"type":"subscribe","channel":"level3"}')
        frames = [orjson.loads(await ws.get_message()) for _ in range(6)]
        t0 = trio.current_time()
        beats = [orjson.loads(await ws.get_message()) for _ in range(3)]
        assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.1)  # one a second
    channels = [f.get("channel", f.get("type")) for f in frames]
    assert channels == ["l2_data", "subscriptions", "subscriptions", "error", "heartbeats", "heartbeats"]
    numbered = [f for f in frames + beats if "sequence_num" in f]
    assert [f["sequence_num"] for f in numbered] == list(range(len(numbered)))
    assert frames[1]["events"] == [{"subscriptions": {"level2": ["BTC-USD"]}}]  # NOPE-USD silently left out
    assert frames[2]["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"], "level2": ["BTC-USD"]}}]
    assert frames[3] == {"type": "error", "message": "authentication failure"}
    assert isinstance(beats[0]["events"][0]["heartbeat_counter"], int) and " +0000 UTC m=+" in beats[0]["events"][0]["current_time"]
    async with open_websocket_url(fake.ws_url) as ws:
        t0 = trio.current_time()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() - t0 == pytest.approx(5.0, abs=0.1)  # nothing subscribed within 5 s
