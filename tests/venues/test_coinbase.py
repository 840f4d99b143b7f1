"""Coinbase Advanced Trade ``level2``: parsing and the connection-wide
``sequence_num`` from the real August 2026 capture (5 MB BTC-USD snapshot
included) and from frames in the captured shape. No sockets."""

from __future__ import annotations

import functools
import re
from decimal import Decimal

import orjson
import pytest
import trio

from tests.capture import records
from trio_books.errors import BadFrame, ConnectionGap, SequenceGap, StaleFeed, SymbolRejected, VenueRejected
from trio_books.heartbeat import Liveness, enforce_heartbeat
from trio_books.model import BEAT, UNKNOWN, UNREQUESTED, Beat, Delta, Snapshot
from trio_books.session import parse_frame
from trio_books.sync import SymbolSync
from trio_books.testing.coinbase import FakeCoinbase, rfc3339
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.coinbase import COINBASE_SPOT, FULL_DEPTH, MAX_MESSAGE_SIZE, ProductChain, iso_seconds

CAPTURE = "coinbase/coinbase_at_level2_heartbeats_2sym_20260809_cryptofeed.capture.jsonl.gz"
PRODUCTS = ("BTC-USD", "ETH-USD")


@functools.cache
def capture() -> tuple[tuple[float, str, str], ...]:
    """(ts, dir, frame) of every record, in order (read once: 7.6 MB of text)."""
    return tuple((r["ts"], r["dir"], r["frame"]) for r in records(CAPTURE))


def rx_frames() -> list[str]:
    return [frame for _, d, frame in capture() if d == "rx"]


def feed(symbols=PRODUCTS, depth=FULL_DEPTH):
    return COINBASE_SPOT.connect(ConnectionSpec("wss://advanced-trade-ws.coinbase.com", None, tuple(symbols), depth))


def replay(frames, symbols=PRODUCTS, depth=FULL_DEPTH):
    """Parse every frame and drive the core's SymbolSync as the session does;
    check the books are never crossed. Returns (proto, syncs, items)."""
    proto = feed(symbols, depth)
    proto.subscribe()  # the session sends them first: the acks answer them
    syncs = {s: SymbolSync(s, depth, proto.new_sequencer(s), proto.verify, proto.rest_snapshots) for s in symbols}
    items = []
    for frame in frames:
        for item in proto.parse(frame):
            if item is UNREQUESTED:
                continue
            items.append(item)
            if type(item) is Snapshot:
                syncs[item.symbol].on_snapshot(item)
            elif type(item) is Delta:
                assert syncs[item.symbol].on_delta(item)
        for sync in syncs.values():
            assert not sync.book.is_crossed()
    return proto, syncs, items


def reference_books(frames) -> dict[str, tuple[dict, dict]]:
    """An independent book from the raw JSON: {product: (bids, asks)} keyed by Decimal price."""
    books: dict[str, tuple[dict, dict]] = {}
    for frame in frames:
        msg = orjson.loads(frame)
        if msg.get("channel") != "l2_data":
            continue
        for ev in msg["events"]:
            if ev["type"] == "snapshot":
                books[ev["product_id"]] = ({}, {})
            bids, asks = books[ev["product_id"]]
            for row in ev["updates"]:
                side = bids if row["side"] == "bid" else asks
                if Decimal(row["new_quantity"]) == 0:
                    side.pop(Decimal(row["price_level"]), None)
                else:
                    side[Decimal(row["price_level"])] = (row["price_level"], row["new_quantity"])
    return books


# --- the real capture ---------------------------------------------------------------


def test_capture_every_sequence_step_holds_and_books_equal_an_independent_replay():
    frames = rx_frames()
    assert len(frames) == 1030
    seqs = [orjson.loads(f)["sequence_num"] for f in frames]
    steps = list(zip(seqs, seqs[1:]))
    assert len(steps) == 1029 and all(b == a + 1 for a, b in steps)  # README: 1029/1029
    proto, syncs, items = replay(frames)
    assert proto.last_seq == seqs[-1] and proto.level2_confirmed
    kinds = [type(i) for i in items]
    assert kinds.count(Snapshot) == 2 and kinds.count(Delta) == 773 and kinds.count(Beat) == 25
    assert all(s.live for s in syncs.values())
    for product, (bids, asks) in reference_books(frames).items():
        book = syncs[product].book
        assert book.top_bids() == [bids[k] for k in sorted(bids, reverse=True)]
        assert book.top_asks() == [asks[k] for k in sorted(asks)]
    assert syncs["BTC-USD"].update_id == max(i.final_id for i in items if type(i) is Delta and i.symbol == "BTC-USD")


def test_capture_snapshot_frames_are_full_depth_and_fit_the_limit():
    frames = rx_frames()
    snaps = [f for f in frames if '"type":"snapshot","product_id"' in f[:200]]
    assert [len(f) for f in snaps] == [5_079_379, 2_531_647]  # BTC-USD, ETH-USD
    assert 2**20 < max(len(f) for f in snaps) < MAX_MESSAGE_SIZE <= 32 * 2**20
    proto = feed()
    (btc,) = proto.parse(snaps[0])
    assert len(btc.bids) + len(btc.asks) == 46_000
    assert btc.bids[0] == ("65083.66", "0.20371215")
    assert all(type(p) is str and type(q) is str for p, q in btc.bids[:100] + btc.asks[:100])  # exact text, no float
    assert btc.update_id == 13 and btc.exchange_ts == pytest.approx(iso_seconds("2026-08-09T21:05:48.483587501Z"))


@pytest.mark.parametrize("kind", ["l2_snapshot", "l2_update", "heartbeats", "subscriptions", "ticker", "last"])
def test_a_flipped_digit_in_a_captured_sequence_num_trips_the_check(kind):
    frames = rx_frames()
    prefix = {"l2_snapshot": '{"channel":"l2_data"', "l2_update": '{"channel":"l2_data"', "heartbeats": '{"channel":"heartbeats"',
              "subscriptions": '{"channel":"subscriptions"', "ticker": '{"channel":"ticker"'}
    if kind == "last":
        index = len(frames) - 1
    elif kind == "l2_snapshot":
        index = next(i for i, f in enumerate(frames) if '"type":"snapshot","product_id"' in f[:200])
    else:
        index = next(i for i, f in enumerate(frames) if i > 25 and f.startswith(prefix[kind]) and '"type":"snapshot"' not in f[:200])
    head = frames[index][:120]
    seq = re.search(r'"sequence_num":(\d+)', head).group(1)
    flipped = seq[:-1] + str((int(seq[-1]) + 5) % 10)
    frames[index] = frames[index].replace(f'"sequence_num":{seq},', f'"sequence_num":{flipped},', 1)
    proto = feed()
    for frame in frames[:index]:
        proto.parse(frame)
    with pytest.raises(ConnectionGap, match=f"sequence_num {flipped} after {int(seq) - 1}"):
        proto.parse(frames[index])


@pytest.mark.parametrize("channel", ["heartbeats", "ticker", "l2_data"])
def test_a_lost_frame_of_any_channel_is_a_gap(channel):
    """One counter across every channel: losing a heartbeat or a ticker frame
    between two book frames is a gap too (the book may not have lost anything,
    but the connection did, and Coinbase guarantees delivery)."""
    frames = rx_frames()
    index = next(i for i, f in enumerate(frames) if i > 40 and f.startswith(f'{{"channel":"{channel}"'))
    del frames[index]
    with pytest.raises(ConnectionGap):
        replay(frames[: index + 1])


def test_a_replayed_frame_is_caught_too():
    frames = rx_frames()
    frames.insert(60, frames[59])
    with pytest.raises(ConnectionGap, match="went back"):
        replay(frames[:61])


# --- subscribe and subscriptions ----------------------------------------------------


def test_subscribe_sends_one_channel_per_message_like_the_capture():
    proto = feed()
    level2, heartbeats = proto.subscribe()
    sent = [frame for _, d, frame in capture() if d == "tx"]
    assert level2.frame in sent and level2.symbols == PRODUCTS  # byte for byte what the capturing client sent
    assert orjson.loads(heartbeats.frame) == {"type": "subscribe", "channel": "heartbeats"}  # the documented shape
    assert heartbeats.symbols == ()
    assert proto.url == "wss://advanced-trade-ws.coinbase.com" and proto.rest_snapshots is False
    assert orjson.loads(feed(("btc-usd",)).subscribe()[0].frame)["product_ids"] == ["BTC-USD"]


def ack(seq: int, subs: dict) -> str:
    return orjson.dumps({"channel": "subscriptions", "timestamp": "2026-08-09T21:05:48.629627857Z", "sequence_num": seq,
                         "events": [{"subscriptions": subs}]}).decode()


def rejected(items) -> list[tuple[str, str]]:
    assert all(isinstance(i, SymbolRejected) for i in items)
    return [(i.symbol, str(i)) for i in items]


LEFT_OUT = "left out of the level2 subscriptions ack (Coinbase silently drops unknown product ids: check the symbol)"


def test_a_product_the_ack_leaves_out_is_rejected_alone_by_name():
    proto = feed(("BTC-USD", "ETH-USD", "NOPE-USD"))
    proto.subscribe()
    assert proto.parse(ack(0, {"market_trades": ["BTC-USD"]})) == []  # not ours: answers nothing of ours
    assert rejected(proto.parse(ack(1, {"level2": ["ETH-USD", "BTC-USD"]}))) == [("NOPE-USD", f"NOPE-USD: {LEFT_OUT}")]
    assert proto.parse(ack(2, {"heartbeats": ["heartbeats"], "level2": ["ETH-USD", "BTC-USD"]})) == []


def test_a_heartbeats_ack_answering_the_level2_subscribe_names_every_product():
    proto = feed()
    proto.subscribe()
    assert [s for s, _ in rejected(proto.parse(ack(0, {"heartbeats": ["heartbeats"]})))] == ["BTC-USD", "ETH-USD"]


def test_the_captured_acks_are_accepted_and_a_doctored_one_is_not():
    frames = rx_frames()
    acks = [f for f in frames if f.startswith('{"channel":"subscriptions"')]
    assert len(acks) == 5 and '"level2":["BTC-USD","ETH-USD"]' in acks[3]
    proto = feed()
    proto.subscribe()
    for a in acks:  # cumulative; the first three answer the capturing client's other channels
        proto.last_seq = orjson.loads(a)["sequence_num"] - 1
        assert proto.parse(a) == []
    assert proto.level2_confirmed and not proto._unacked
    doctored = acks[3].replace('"level2":["BTC-USD","ETH-USD"]', '"level2":["BTC-USD"]')
    proto = feed()
    proto.subscribe()
    assert rejected(proto.parse(doctored)) == [("ETH-USD", f"ETH-USD: {LEFT_OUT}")]


def test_error_frames_are_venue_rejected():
    with pytest.raises(VenueRejected, match="venue error: authentication failure"):
        feed().parse('{"type":"error","message":"authentication failure"}')


# --- shapes ------------------------------------------------------------------------------


def snapshot_frame(seq=0, product="BTC-USD"):
    return orjson.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z", "sequence_num": seq,
                         "events": [{"type": "snapshot", "product_id": product, "updates": [
                             {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73", "new_quantity": "0.06317902"},
                             {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.3", "new_quantity": "0.02"},
                             {"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.74", "new_quantity": "1"}]}]}).decode()


def update_frame(seq=1, rows=None, product="BTC-USD"):
    rows = rows or [{"side": "bid", "event_time": "2023-02-09T20:32:50.714964Z", "price_level": "21921.73", "new_quantity": "0"}]
    return orjson.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.8Z", "sequence_num": seq,
                         "events": [{"type": "update", "product_id": product, "updates": rows}]}).decode()


def test_documented_snapshot_and_update():
    proto = feed(("BTC-USD",))
    (snap,) = proto.parse(snapshot_frame())
    assert snap == Snapshot("BTC-USD", [("21921.73", "0.06317902"), ("21921.3", "0.02")], [("21921.74", "1")], 0,
                            iso_seconds("2023-02-09T20:32:50.714964855Z"))
    (upd,) = proto.parse(update_frame())
    assert upd.bids == [("21921.73", "0")] and upd.asks == [] and (upd.first_id, upd.final_id) == (1, 1)
    assert upd.exchange_ts == pytest.approx(1675974770.714964)  # the row's event_time, not the envelope's
    # the epoch-zero event_time of the docs' snapshot rows is never used as a time
    assert iso_seconds("1970-01-01T00:00:00Z") is None


def test_one_frame_with_several_events_applies_them_in_order():
    frame = orjson.loads(snapshot_frame())
    frame["events"] += [
        {"type": "snapshot", "product_id": "ETH-USD", "updates": [{"side": "offer", "event_time": "2023-02-09T20:32:50Z", "price_level": "1600.1", "new_quantity": "2"}]},
        {"type": "update", "product_id": "BTC-USD", "updates": [{"side": "bid", "event_time": "2023-02-09T20:32:51Z", "price_level": "21921.3", "new_quantity": "0.00000000"}]},
        {"type": "update", "product_id": "SOL-USD", "updates": [{"side": "bid", "event_time": "2023-02-09T20:32:51Z", "price_level": "20", "new_quantity": "1"}]},
    ]
    _, syncs, items = replay([orjson.dumps(frame).decode(), update_frame(1)])
    assert [(type(i).__name__, i.symbol) for i in items] == [
        ("Snapshot", "BTC-USD"), ("Snapshot", "ETH-USD"), ("Delta", "BTC-USD"), ("Delta", "BTC-USD")]
    assert syncs["BTC-USD"].book.top_bids() == [] and syncs["BTC-USD"].book.top_asks() == [("21921.74", "1")]
    assert syncs["ETH-USD"].book.top_asks() == [("1600.1", "2")]


def test_heartbeats_are_beats_with_either_counter_type():
    proto = feed()
    doc = ('{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z","sequence_num":0,"events":'
           '[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":"3049"}]}')
    wire = ('{"channel":"heartbeats","timestamp":"2026-09-05T22:10:30.260465255Z","sequence_num":1,"events":'
            '[{"current_time":"2026-09-05 22:10:30.25788961 +0000 UTC m=+139651.272674714","heartbeat_counter":139651}]}')
    assert proto.parse(doc) == [BEAT] and proto.parse(wire) == [BEAT]


def test_update_before_its_snapshot_is_a_gap_of_that_book():
    with pytest.raises(SequenceGap, match="BTC-USD: update before its snapshot") as info:
        feed().parse(update_frame(0))
    assert info.value.symbol == "BTC-USD"


def test_other_products_and_channels_are_ignored_but_counted():
    proto = feed(("BTC-USD",))
    assert proto.parse(snapshot_frame(0, "ETH-USD")) == [UNREQUESTED]  # counted by the reader
    assert proto.parse('{"channel":"ticker","timestamp":"2026-08-09T21:05:48Z","sequence_num":1,"events":[]}') == [UNKNOWN]
    with pytest.raises(ConnectionGap):
        proto.parse(snapshot_frame(3))


@pytest.mark.parametrize(
    "raw",
    [
        update_frame(1)[:70],  # cut in half
        "[1,2]",
        '{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","events":[]}',  # no sequence_num
        '{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":"1","events":[]}',
        '{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":1,"events":{}}',
        update_frame(1, [{"side": "ask", "event_time": "", "price_level": "1", "new_quantity": "1"}]),
        update_frame(1, [{"side": "bid", "event_time": "", "price_level": 21921.73, "new_quantity": "1"}]),
        update_frame(1, [{"side": "bid", "event_time": "", "price_level": "21921.73", "new_quantity": None}]),
        update_frame(1, [{"side": "bid", "event_time": "", "price_level": "abc", "new_quantity": "1"}]),
        update_frame(1, [{"side": "bid", "event_time": "", "price_level": "5", "new_quantity": "-1"}]),
        update_frame(1, ["bid"]),
        update_frame(1).replace('"type":"update"', '"type":"l2update"'),
        update_frame(1).replace('"updates":[', '"updates":{"x":[').replace("]}]}", "]}}]}"),
        ack(1, ["level2"]),
    ],
)
def test_bad_frames(raw):
    proto = feed(("BTC-USD",))
    proto.parse(snapshot_frame(0))
    sync = SymbolSync("BTC-USD", FULL_DEPTH, proto.new_sequencer("BTC-USD"), proto.verify, False)
    sync.on_snapshot(Snapshot("BTC-USD", [("1", "1")], [("100000", "1")], 0))
    with pytest.raises(BadFrame):
        for item in parse_frame(proto.parse, raw):  # as the session calls it
            sync.on_delta(item)


def test_product_chain_moves_forward_only():
    chain = ProductChain()
    chain.on_snapshot(Snapshot("BTC-USD", [], [], 7), [])
    assert [chain.check(Delta("BTC-USD", [], [], s, s)).value for s in (7, 9, 9, 12, 11)] == ["apply", "apply", "apply", "apply", "gap"]


@pytest.mark.parametrize(
    "text,want",
    [
        ("2026-08-09T21:05:48.505350477Z", 1786309548.505350477),
        ("2026-08-09T21:05:48.59377133Z", 1786309548.59377133),
        ("2026-08-09T21:05:48.210883Z", 1786309548.210883),
        ("2026-08-09T21:05:48Z", 1786309548.0),
        ("2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341", None),  # heartbeat current_time: not RFC 3339
        ("2026-08-09T21:05:48.5+01:00", None),
        ("2026-13-09T21:05:48Z", None),
        ("2026-08-09T21:05:4xZ", None),
        (1786309548, None),
    ],
)
def test_iso_seconds(text, want):
    got = iso_seconds(text)
    assert got == (pytest.approx(want, abs=1e-6) if want is not None else None)


# --- the venue and the heartbeat rule ----------------------------------------------------


def test_venue_spec_follows_the_doc():
    v = get_venue("coinbase_spot")
    assert v is COINBASE_SPOT
    assert v.ws_url == "wss://advanced-trade-ws.coinbase.com" and v.rest_url is None
    assert v.max_message_size == 16 * 2**20
    hb = v.heartbeat
    assert (hb.watchdog, hb.watchdog_on, hb.ping_interval) == (60.0, "beat", None)
    assert v.default_depth == FULL_DEPTH and v.depth_problem(FULL_DEPTH) is None
    assert v.connect_budget == (4, 1.0) and v.subscribe_spacing * 8 <= 1.0  # 8 msgs/s per IP, 2 per connection
    assert v.subscribe_spacing * (len(feed().subscribe()) - 1) < 5.0  # all sent within the 5 s deadline


async def _replay_in_time(keep, until: float):
    """Replay the capture at its own pace under MockClock, with the heartbeat task
    enforcing the venue's rule; parse BEATs into Liveness as the session does."""
    proto = feed()
    start = trio.current_time()
    live = Liveness(last_frame=start, last_beat=start)
    recs = [(ts, frame) for ts, d, frame in capture() if d == "rx"]
    t0 = recs[0][0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(enforce_heartbeat, None, COINBASE_SPOT.heartbeat, live)
        for ts, frame in recs:
            await trio.sleep_until(start + ts - t0)
            items = proto.parse(frame)
            live.last_frame = trio.current_time()
            if keep(frame) and BEAT in items:
                live.last_beat = trio.current_time()
        await trio.sleep_until(start + until)
        nursery.cancel_scope.cancel()
    return trio.current_time() - start, recs[-1][0] - t0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def test_the_captured_heartbeats_keep_the_watchdog_quiet(autojump_clock):
    ran, seconds = await _replay_in_time(lambda f: True, until=50.0)
    assert seconds == pytest.approx(24.25, abs=0.05) and ran == pytest.approx(50.0)


async def test_book_data_without_heartbeats_does_not_feed_the_watchdog(autojump_clock):
    start = trio.current_time()
    with pytest.raises(BaseException) as info:
        await _replay_in_time(lambda f: False, until=120.0)  # 24.8 s of book frames, no beat counted
    assert [type(e) for e in _leaves(info.value)] == [StaleFeed]
    assert "no heartbeat for 60 s" in str(_leaves(info.value)[0])
    assert trio.current_time() - start == pytest.approx(60.0, abs=0.01)


# --- the fake speaks the captured shapes ---------------------------------------------------


def test_fake_frames_have_the_captured_shape_and_parse():
    fake = FakeCoinbase(["BTC-USD"], seed=3)
    (raw,) = fake.encode_delta("BTC-USD", *fake.next_change("BTC-USD"))
    mine, real = orjson.loads(raw), orjson.loads(next(f for f in rx_frames() if f.startswith('{"channel":"l2_data"') and '"type":"update"' in f[:120]))
    assert list(mine) == list(real) == ["channel", "timestamp", "sequence_num", "events"]
    assert list(mine["events"][0]) == list(real["events"][0])
    assert list(mine["events"][0]["updates"][0]) == list(real["events"][0]["updates"][0])
    assert iso_seconds(mine["timestamp"]) is not None and iso_seconds(mine["events"][0]["updates"][0]["event_time"]) is not None
    proto = feed(("BTC-USD",))
    proto._snapshotted.add("BTC-USD")
    (delta,) = proto.parse(raw)
    assert delta.symbol == "BTC-USD" and delta.final_id == 0
    assert rfc3339(1_786_309_548_590_000_000) == "2026-08-09T21:05:48.59Z" and rfc3339(1_786_309_548_000_000_000) == "2026-08-09T21:05:48Z"
