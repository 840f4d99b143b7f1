"""Bybit V5 ``orderbook.{depth}.{symbol}``: parsing and the ``u`` chain, replaying
the real 2026 spot and linear captures whole, plus tables of synthetic cases.
No sockets. ``tests/data/bybit/*.gz`` are gzip copies of the whole
``shared/realdata/bybit/`` captures (cryptofeed ``sample_data``, branch ``v3``,
57d5f18d), byte for byte once inflated."""

from __future__ import annotations

import re
from collections import Counter

import attrs
import orjson
import pytest

from tests.capture import records
from trio_books.config import load_config_text
from trio_books.errors import BadFrame, ConfigError, SequenceGap
from trio_books.model import BEAT, UNKNOWN, UNREQUESTED, Delta, Snapshot
from trio_books.session import parse_frame
from trio_books.supervise import connection_groups
from trio_books.sync import SymbolSync
from trio_books.testing.bybit import FakeBybitFutures, FakeBybitSpot
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.bybit import ARGS_CHARS_PER_CONNECTION, BYBIT_FUTURES, BYBIT_SPOT, UpdateIdStep

LINEAR = "bybit/bybit_v5_linear_orderbook200_4sym_20260809_cryptofeed.capture.jsonl.gz"
SPOT = "bybit/bybit_v5_spot_orderbook200_2sym_20260809_cryptofeed.capture.jsonl.gz"
# product -> (capture, venue, symbols, snapshots, deltas) as counted in shared/realdata/README.md
CAPTURES = {
    "linear": (LINEAR, BYBIT_FUTURES, ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"), 4, 1594),
    "spot": (SPOT, BYBIT_SPOT, ("BTCUSDT", "ETHUSDT"), 2, 548),
}
_FRAMES: dict[str, list[str]] = {}


def feed(venue=BYBIT_SPOT, symbols=("BTCUSDT",), depth=200, ws_base="wss://stream.bybit.com"):
    return venue.connect(ConnectionSpec(ws_base, None, tuple(symbols), depth))


def rx_frames(product: str) -> list[str]:
    """Every frame the capturing client received, in order (all topics, acks)."""
    if product not in _FRAMES:
        _FRAMES[product] = [r["frame"] for r in records(CAPTURES[product][0]) if r["dir"] == "rx"]
    return list(_FRAMES[product])


def replay(frames, venue, symbols, depth=200):
    """Parse every frame and drive the core's SymbolSync with this venue's
    sequencer, as the session does; the book must never cross."""
    proto = feed(venue, symbols, depth)
    syncs = {s: SymbolSync(s, depth, proto.new_sequencer(s), proto.verify, proto.rest_snapshots) for s in symbols}
    counts: Counter[str] = Counter()
    for frame in frames:
        for item in proto.parse(frame):
            if item is BEAT or item is UNKNOWN:  # other topics of the capture: counted by the reader
                continue
            sync = syncs[item.symbol]
            if type(item) is Snapshot:
                sync.on_snapshot(item)
                counts["snapshot"] += 1
            else:
                assert sync.on_delta(item)
                counts["delta"] += 1
            assert not sync.book.is_crossed()
    return syncs, counts


# --- the real captures ------------------------------------------------------------------


@pytest.mark.parametrize("product", ["linear", "spot"])
def test_capture_every_u_step_holds_and_books_never_cross(product):
    path, venue, symbols, snapshots, deltas = CAPTURES[product]
    frames = rx_frames(product)
    syncs, counts = replay(frames, venue, symbols)
    assert counts == {"snapshot": snapshots, "delta": deltas}  # 1594/1594 linear, 548/548 spot
    last_u = {}
    for frame in frames:
        m = orjson.loads(frame)
        if str(m.get("topic", "")).startswith("orderbook."):
            last_u[m["data"]["s"]] = m["data"]["u"]
    for s, sync in syncs.items():
        assert sync.live and sync.update_id == last_u[s]
        # Bybit sends "0" for levels leaving the window: the books stay 200 x 200
        assert (len(sync.book.bids), len(sync.book.asks)) == (200, 200)
        assert all(type(p) is str and type(q) is str for p, q in sync.book.top_bids() + sync.book.top_asks())


def test_capture_first_frames_map_fields_exactly():
    frames = [f for f in rx_frames("linear") if f.startswith('{"topic":"orderbook.200.BTCUSDT"')]
    proto = feed(BYBIT_FUTURES, ("BTCUSDT",))
    (snap,) = proto.parse(frames[0])
    (delta,) = proto.parse(frames[1])
    assert type(snap) is Snapshot and snap.update_id == 15076952
    assert snap.bids[0] == ["65114.20", "6.054"] and snap.asks[0] == ["65114.30", "10.486"]  # exact text
    assert snap.exchange_ts == 1786310818.027  # cts, ms -> s
    assert type(delta) is Delta and (delta.first_id, delta.final_id, delta.prev_id) == (15076953, 15076953, None)
    assert delta.exchange_ts == 1786310818.129
    # spot puts ts before type; same fields
    spot = [f for f in rx_frames("spot") if f.startswith('{"topic":"orderbook.200.BTCUSDT"')]
    (s_snap,) = feed(BYBIT_SPOT, ("BTCUSDT",)).parse(spot[0])
    assert s_snap.update_id == 62505424 and s_snap.bids[1] == ["65140", "0.014"] and s_snap.exchange_ts == 1786310816.512


def _orderbook_indexes(frames, symbol="BTCUSDT"):
    return [i for i, f in enumerate(frames) if f.startswith(f'{{"topic":"orderbook.200.{symbol}"')]


@pytest.mark.parametrize("product", ["linear", "spot"])
@pytest.mark.parametrize("position", [0, 3, -1], ids=["first-digit", "middle-digit", "last-digit"])
def test_a_flipped_digit_in_a_captured_u_trips_the_check(product, position):
    _, venue, symbols, _, _ = CAPTURES[product]
    frames = rx_frames(product)
    idx = _orderbook_indexes(frames)[40]  # a delta in the middle of the run
    match = re.search(r'"u":(\d+)', frames[idx])
    assert match is not None and '"type":"delta"' in frames[idx]
    digits = list(match.group(1))
    digits[position] = str((int(digits[position]) + 1) % 10)
    frames[idx] = frames[idx].replace(match.group(0), '"u":' + "".join(digits))
    replay(frames[:idx], venue, symbols)  # fine up to the flipped frame
    with pytest.raises(SequenceGap, match="BTCUSDT: gap at"):
        replay(frames, venue, symbols)


@pytest.mark.parametrize("fault", ["dropped", "replayed"])
def test_a_dropped_or_replayed_captured_delta_is_a_gap(fault):
    _, venue, symbols, _, _ = CAPTURES["linear"]
    frames = rx_frames("linear")
    idx = _orderbook_indexes(frames, "ETHUSDT")[10]
    if fault == "dropped":
        del frames[idx]
    else:
        frames.insert(idx + 1, frames[idx])
    with pytest.raises(SequenceGap, match="ETHUSDT"):
        replay(frames, venue, symbols)


def test_the_captures_other_frames_are_ignored():
    proto = feed(BYBIT_FUTURES, ("BTCUSDT",))
    other = [f for f in rx_frames("linear") if '"topic":"orderbook.' not in f]
    kinds = Counter(orjson.loads(f).get("topic", "ack").split(".")[0] for f in other)
    assert set(kinds) == {"ack", "tickers", "publicTrade", "kline"} and kinds["ack"] == 17
    # 17 acks (nothing to do), tickers, trades, klines (not ours: counted as unknown)
    assert [proto.parse(f) for f in other] == [[UNKNOWN] if "topic" in orjson.loads(f) else [] for f in other]
    # an orderbook topic of another symbol is not this connection's
    eth = next(f for f in rx_frames("linear") if f.startswith('{"topic":"orderbook.200.ETHUSDT"'))
    assert proto.parse(eth) == [UNREQUESTED]  # dropped by the reader, counted
    assert feed(BYBIT_FUTURES, ("ETHUSDT",), depth=50).parse(eth) == [UNREQUESTED]  # another depth: another topic


# --- the u chain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,events,want",
    [
        # ("S", u) is a snapshot, ("D", u) a delta; want lists the deltas' verdicts
        ("TC0 the worked example", [("S", 15076952), ("D", 15076953), ("D", 15076954)], ["APPLY", "APPLY"]),
        ("TC1 one lost", [("S", 15076952), ("D", 15076953), ("D", 15076955)], ["APPLY", "GAP"]),
        ("TC2 replayed", [("S", 100), ("D", 101), ("D", 101)], ["APPLY", "GAP"]),
        ("TC3 older than the snapshot", [("S", 100), ("D", 99)], ["GAP"]),
        ("TC4 equal to the snapshot", [("S", 100), ("D", 100)], ["GAP"]),
        ("TC5 restart snapshot u=1", [("S", 100), ("D", 101), ("S", 1), ("D", 2), ("D", 3)], ["APPLY", "APPLY", "APPLY"]),
        ("TC6 old chain after the restart", [("S", 100), ("D", 101), ("S", 1), ("D", 102)], ["APPLY", "GAP"]),
        ("TC7 depth 1: same u re-sent", [("S", 7), ("S", 7), ("S", 8)], []),
        ("TC8 re-sent snapshot mid-chain", [("S", 100), ("D", 101), ("S", 250), ("D", 251)], ["APPLY", "APPLY"]),
        ("TC9 no snapshot yet", [("D", 5)], ["GAP"]),
        ("TC10 far jump", [("S", 1), ("D", 1_000_000)], ["GAP"]),
    ],
)
def test_u_chain_table(name, events, want):
    chain = UpdateIdStep()
    got = []
    for kind, u in events:
        if kind == "S":
            assert chain.on_snapshot(Snapshot("X", [], [], u), [])
        else:
            got.append(chain.check(Delta("X", [], [], u, u)).name)
            if got[-1] == "GAP":
                break
    assert got == want, name


def test_sequencer_refuses_events_without_an_integer_u():
    with pytest.raises(BadFrame):
        UpdateIdStep().on_snapshot(Snapshot("X", [], [], None), [])
    chain = UpdateIdStep()
    chain.on_snapshot(Snapshot("X", [], [], 5), [])
    with pytest.raises(BadFrame):
        chain.check(Delta("X", [], [], None, None))


def book_frame(kind, u, *, bids=(), asks=(), symbol="BTCUSDT", depth=50, cts=1687940967464) -> str:
    """A linear push in the real field order (``type`` before ``ts`` at depth 50)."""
    return orjson.dumps({"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": cts + 2,
                         "data": {"s": symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": u, "seq": 66544703342},
                         "cts": cts}).decode()


def test_restart_snapshot_u1_replaces_the_book_and_restarts_the_chain():
    frames = [f for f in rx_frames("linear") if f.startswith('{"topic":"orderbook.200.BTCUSDT"')][:30]
    proto = feed(BYBIT_FUTURES, ("BTCUSDT",))
    sync = SymbolSync("BTCUSDT", 200, proto.new_sequencer("BTCUSDT"), proto.verify, False)
    for f in frames:
        for ev in proto.parse(f):
            sync.on_snapshot(ev) if type(ev) is Snapshot else sync.on_delta(ev)
    old_u = sync.update_id
    assert len(sync.book.bids) == 200
    (restart,) = proto.parse(book_frame("snapshot", 1, bids=[("65000.10", "1.000")], asks=[("65000.20", "2.000")], depth=200))
    sync.on_snapshot(restart)
    assert sync.book.top_bids() == [("65000.10", "1.000")] and sync.book.top_asks() == [("65000.20", "2.000")]  # replaced, not merged
    assert sync.update_id == 1
    (d2,) = proto.parse(book_frame("delta", 2, asks=[("65000.20", "0"), ("65000.30", "0.500")], depth=200))
    assert sync.on_delta(d2) and sync.book.top_asks() == [("65000.30", "0.500")] and sync.update_id == 2
    (stale,) = proto.parse(book_frame("delta", old_u + 1, bids=[("65000.00", "1")], depth=200))
    with pytest.raises(SequenceGap):
        sync.on_delta(stale)


def test_delta_before_any_snapshot_is_a_gap():
    proto = feed(BYBIT_FUTURES, depth=50)
    with pytest.raises(SequenceGap, match="before any snapshot"):
        proto.parse(book_frame("delta", 177400507))
    proto.parse(book_frame("snapshot", 177400506))
    (d,) = proto.parse(book_frame("delta", 177400507))
    assert type(d) is Delta


def test_depth_one_snapshots_only_keep_replacing_the_book():
    proto = feed(BYBIT_SPOT, depth=1)
    sync = SymbolSync("BTCUSDT", 1, proto.new_sequencer("BTCUSDT"), proto.verify, False)
    for u, bid, ask in [(9, "100.1", "100.2"), (9, "100.1", "100.2"), (10, "100", "100.3")]:  # 3 s re-send: same u
        (snap,) = proto.parse(book_frame("snapshot", u, bids=[(bid, "1")], asks=[(ask, "2")], depth=1))
        sync.on_snapshot(snap)
    assert sync.book.top_bids() == [("100", "1")] and sync.book.top_asks() == [("100.3", "2")]


# --- the parser ---------------------------------------------------------------------------


def test_pongs_of_both_products_are_heartbeat_evidence():
    proto = feed()
    # the docs' pong shapes: op is "ping", ret_msg "pong" (spot; linear adds req_id)
    assert proto.parse('{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}') == [BEAT]
    assert proto.parse('{"success":true,"ret_msg":"pong","conn_id":"465772b1-7630-4fdc-a492-e003e6f0f260","req_id":"","op":"ping"}') == [BEAT]
    assert proto.parse('{"args":["1672916271846"],"op":"pong"}') == [BEAT]  # the option/spread shape


def test_acks_are_quiet():
    proto = feed(BYBIT_FUTURES, ("BTCUSDT",))
    assert proto.parse('{"success":true,"ret_msg":"subscribe","conn_id":"d9avt8shteepr00gfc1g-4zd1x","op":"subscribe"}') == []
    assert proto.parse('{"success":true,"ret_msg":"","conn_id":"d8bu1olkndm7crnfs1e0-j6akw","req_id":"","op":"subscribe"}') == []
    # refusals: tests/integration/test_bybit_book_domains.py


@pytest.mark.parametrize(
    "text",
    [
        '["not", "an", "object"]',
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":[{"s":"BTCUSDT","b":[],"a":[],"u":1}]}',
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":"1"}}',
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":{},"a":[],"u":1}}',
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"ETHUSDT","b":[],"a":[],"u":1}}',
        '{"topic":"orderbook.50.BTCUSDT","type":"partial","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":1}}',
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":1.5}}',
    ],
)
def test_malformed_book_frames_are_bad_frames(text):
    with pytest.raises(BadFrame):
        feed(depth=50).parse(text)


def test_truncated_frames_and_bad_levels_are_bad_frames():
    frame = next(f for f in rx_frames("spot") if f.startswith('{"topic":"orderbook.200.BTCUSDT"'))
    with pytest.raises(BadFrame, match="cannot parse frame"):
        parse_frame(feed().parse, frame[: len(frame) // 2])
    proto = feed(depth=50)
    sync = SymbolSync("BTCUSDT", 50, proto.new_sequencer("BTCUSDT"), proto.verify, False)
    for levels in ([[65114.2, "1"]], [["65114.2"]], [["65114.2", "-1"]], [["abc", "1"]]):
        (snap,) = proto.parse(book_frame("snapshot", 1, bids=levels))
        with pytest.raises(BadFrame):
            sync.on_snapshot(snap)


# --- subscribe, URL, limits ------------------------------------------------------------------


@pytest.mark.parametrize("venue", [BYBIT_SPOT, BYBIT_FUTURES], ids=["spot", "linear"])
def test_subscribe_batches_ten_args_per_request_with_req_ids(venue):
    symbols = tuple(f"C{i}USDT" for i in range(25))
    subs = feed(venue, symbols, depth=1000).subscribe()
    frames = [orjson.loads(f.frame) for f in subs]
    assert [len(f["args"]) for f in frames] == [10, 10, 5]
    assert [f["req_id"] for f in frames] == ["1", "2", "3"] and {f["op"] for f in frames} == {"subscribe"}
    assert frames[0]["args"][0] == "orderbook.1000.C0USDT" and frames[2]["args"][-1] == "orderbook.1000.C24USDT"
    assert subs[2].symbols == symbols[20:]  # each book's sync clock starts when its request goes out


def test_symbols_go_upper_case_on_the_wire_and_come_back_as_configured():
    proto = feed(BYBIT_SPOT, ("btcusdt",), depth=50)
    assert orjson.loads(proto.subscribe()[0].frame)["args"] == ["orderbook.50.BTCUSDT"]
    (snap,) = proto.parse(book_frame("snapshot", 3, bids=[("1", "1")]))
    assert snap.symbol == "btcusdt"


def test_urls_per_product():
    assert feed(BYBIT_SPOT).url == "wss://stream.bybit.com/v5/public/spot"
    assert feed(BYBIT_FUTURES).url == "wss://stream.bybit.com/v5/public/linear"
    assert feed(BYBIT_SPOT, ws_base="wss://stream.bybit.tr").url == "wss://stream.bybit.tr/v5/public/spot"  # regional host
    full = "wss://stream-testnet.bybit.com/v5/public/linear"
    assert feed(BYBIT_FUTURES, ws_base=full).url == full


def test_the_connection_limit_keeps_args_within_21000_characters():
    per_conn = BYBIT_SPOT.max_symbols_per_connection
    symbols = tuple(f"{i:03d}" + "X" * 27 + "USDT" for i in range(per_conn))  # 34-character symbols
    frames = feed(BYBIT_SPOT, symbols, depth=1000).subscribe()
    args_json = sum(len(orjson.dumps(orjson.loads(f.frame)["args"])) for f in frames)
    assert args_json <= ARGS_CHARS_PER_CONNECTION
    groups = connection_groups([f"S{i}USDT" for i in range(2 * per_conn + 1)], per_conn)
    assert [len(g) for g in groups] == [per_conn, per_conn, 1]


def test_variants_differ_by_parameters_only():
    assert get_venue("bybit_spot") is BYBIT_SPOT and get_venue("bybit_futures") is BYBIT_FUTURES
    assert attrs.evolve(BYBIT_FUTURES, id=BYBIT_SPOT.id, connect=BYBIT_SPOT.connect, market="spot") == BYBIT_SPOT
    for venue in (BYBIT_SPOT, BYBIT_FUTURES):
        assert venue.depths == (1, 50, 200, 1000) and venue.default_depth == 200
        assert venue.rest_url is None and not feed(venue).rest_snapshots
        hb = venue.heartbeat
        assert (hb.ping_interval, hb.ping_text, hb.pong_on, hb.pong_timeout) == (20.0, '{"op":"ping"}', "beat", 10.0)
        assert hb.watchdog >= 60.0 and hb.watchdog_on == "any"
        assert venue.connect_budget == (250, 300.0)  # together: 500 per 5 minutes on stream.bybit.com


@pytest.mark.parametrize("venue,depth", [("bybit_futures", 500), ("bybit_spot", 25), ("bybit_spot", 100)])
def test_config_refuses_depths_bybit_does_not_have(venue, depth):
    with pytest.raises(ConfigError, match=f"venues.{venue}.depth: must be one of 1, 50, 200, 1000"):
        load_config_text(f'[venues.{venue}]\nsymbols = ["BTCUSDT"]\ndepth = {depth}\n')
    cfg = load_config_text(f'[venues.{venue}]\nsymbols = ["BTCUSDT"]\ndepth = 1000\n')
    assert cfg.venues[venue].depth == 1000


# --- the fake speaks the captured shapes ------------------------------------------------------


@pytest.mark.parametrize("product,fake_cls", [("linear", FakeBybitFutures), ("spot", FakeBybitSpot)])
def test_fake_frames_have_the_captured_field_order_and_chain(product, fake_cls):
    real = [orjson.loads(f) for f in rx_frames(product) if f.startswith('{"topic":"orderbook.200.BTCUSDT"')][:2]
    fake = fake_cls(["BTCUSDT"])
    frames = [fake.snapshot_frame("BTCUSDT", 200)] + [fake.encode_delta("BTCUSDT", *fake.next_change("BTCUSDT"))[0] for _ in range(5)]
    mine = [orjson.loads(f) for f in frames]
    for r, m in zip(real, mine):
        assert list(m) == list(r) and list(m["data"]) == list(r["data"]) and m["type"] == r["type"]
    # the venue's parser and sequencer accept the fake's run
    proto = feed(get_venue(fake.venue_id), ("BTCUSDT",))
    sync = SymbolSync("BTCUSDT", 200, proto.new_sequencer("BTCUSDT"), proto.verify, False)
    for f in frames:
        for ev in proto.parse(f):
            assert sync.on_snapshot(ev) if type(ev) is Snapshot else sync.on_delta(ev)
    assert sync.book.top_bids(20) == fake.top("BTCUSDT", 20)[0]
    # number text like the venue's: spot trims zeros, linear keeps fixed decimals
    price = mine[0]["data"]["b"][9][0]
    assert price == ("999.90" if product == "linear" else "999")
