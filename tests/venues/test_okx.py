"""OKX V5 ``books``: parsing, the seqId chain and the CRC32, from the real 2022
capture and from tables of synthetic frames in the real field order. No sockets."""

from __future__ import annotations

import orjson
import pytest

from tests.capture import records
from trio_books.config import load_config_text
from trio_books.errors import (BadFrame, ChecksumMismatch, ConfigError, SequenceGap, SnapshotUnusable, SymbolRejected, VenueRejected)
from trio_books.model import BEAT, UNKNOWN, UNREQUESTED, Delta, Planned, Snapshot
from trio_books.sync import SnapshotTooOld, SymbolSync
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.okx import OKX_SPOT, OPS_PER_CONNECTION, SeqIdChain, checksum

CAPTURE = "okx/okx_v5_books_3inst_20220513_cryptofeed.capture.jsonl"
CAPTURE_INSTS = ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527")


def feed(symbols=("BTC-USDT",), depth=400, **options):
    return OKX_SPOT.connect(ConnectionSpec("wss://ws.okx.com", "https://openapi.okx.com", tuple(symbols), depth, options))


def book_frames(instruments=CAPTURE_INSTS) -> list[str]:
    """The captured ``books`` frames (snapshot + updates) of ``instruments``, in order."""
    out = []
    for rec in records(CAPTURE):
        frame = rec["frame"]
        if rec["dir"] == "rx" and '"channel":"books",' in frame and '"action":' in frame and any(f'"instId":"{i}"' in frame for i in instruments):
            out.append(frame)
    return out


def replay(frames, symbols=CAPTURE_INSTS, depth=400):
    """Parse every captured frame and drive the core's SymbolSync with this venue's
    sequencer and checksum. Returns (syncs, checks verified)."""
    proto = feed(symbols, depth)
    verified = []

    def verify(book, event):
        ok = proto.verify(book, event)
        verified.append(ok)
        return ok

    syncs = {s: SymbolSync(s, depth, proto.new_sequencer(s), verify, proto.rest_snapshots) for s in symbols}
    for frame in frames:
        for ev in proto.parse(frame):
            sync = syncs[ev.symbol]
            if type(ev) is Snapshot:
                sync.on_snapshot(ev)
            else:
                assert sync.on_delta(ev)
            assert not sync.book.is_crossed()
    return syncs, verified


# --- the real capture ---------------------------------------------------------------


def test_capture_every_checksum_validates_and_books_never_cross():
    frames = book_frames()
    assert len(frames) == 290
    syncs, verified = replay(frames)
    assert verified == [True] * 290  # 3 snapshots + 287 updates, README: 290/290
    assert all(s.live for s in syncs.values())
    # the liquid book holds OKX's full 400-level window throughout
    btc = syncs["BTC-USDT"].book
    assert (len(btc.bids), len(btc.asks)) == (400, 400)
    # exact text is kept and served: "30244" stays "30244" (no float, no padding)
    assert all(type(p) is str and type(q) is str for p, q in btc.top_bids(400) + btc.top_asks(400))


def test_capture_first_frames_match_the_documented_checksums():
    snap_frame, first_update = book_frames(("BTC-USDT",))[:2]
    proto = feed()
    (snap,) = proto.parse(snap_frame)
    (upd,) = proto.parse(first_update)
    assert snap.checksum == 47640993 and upd.checksum == -652563973
    assert snap.asks[0] == ("30243.5", "1.44679") and snap.bids[0] == ("30243.4", "0.0012029")
    assert snap.update_id is None and upd.prev_id is None  # 2022: before seqId/prevSeqId existed


@pytest.mark.parametrize(
    "which,old,new",
    [
        ("snapshot", '["30243.5","1.44679"', '["30243.5","1.44689"'),  # best ask size
        ("snapshot", '["30236.6","0.007903"', '["30236.7","0.007903"'),  # 2nd bid price
        ("update", '["30243.5","1.2112"', '["30243.5","1.2113"'),  # best ask size
        ("update", '["30235.9","0.1016"', '["30235.8","0.1016"'),  # a bid price in the top 25
    ],
)
def test_a_flipped_digit_in_a_captured_level_fails_the_checksum(which, old, new):
    frames = book_frames(("BTC-USDT",))
    idx = 0 if which == "snapshot" else 1
    assert frames[idx].count(old) == 1
    frames[idx] = frames[idx].replace(old, new)
    with pytest.raises(ChecksumMismatch):
        replay(frames, ("BTC-USDT",))


def test_a_dropped_captured_update_fails_the_checksum():
    frames = book_frames(("BTC-USDT",))
    del frames[5]
    with pytest.raises(ChecksumMismatch):
        replay(frames, ("BTC-USDT",))


# --- the checksum --------------------------------------------------------------------


def test_checksum_matches_the_documented_examples():
    assert checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    # a short side is skipped; the longer side's levels follow one another
    assert checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360


def test_checksum_uses_the_exact_text():
    assert checksum([("3366.1", "7")], [("3366.8", "9")]) != checksum([("3366.10", "7")], [("3366.8", "9")])


def test_checksum_zero_is_absent_never_a_mismatch():
    proto = feed()
    snap, upd = (proto.parse(f)[0] for f in (frame("snapshot", -1, 10, bids=[["100", "1"]], asks=[["101", "1"]]),
                                              frame("update", 10, 15, asks=[["101", "2"]])))
    assert snap.checksum is None and upd.checksum is None
    sync = SymbolSync("BTC-USDT", 400, proto.new_sequencer("BTC-USDT"), proto.verify, False)
    sync.on_snapshot(snap)
    assert sync.on_delta(upd) and sync.book.top_asks() == [("101", "2")]


def test_a_nonzero_checksum_is_verified_on_synthetic_frames():
    bids, asks = [["100", "1", "0", "1"]], [["101", "1", "0", "1"]]
    good = checksum([("100", "1")], [("101", "1")])
    proto = feed()
    sync = SymbolSync("BTC-USDT", 400, proto.new_sequencer("BTC-USDT"), proto.verify, False)
    sync.on_snapshot(proto.parse(frame("snapshot", -1, 10, bids=bids, asks=asks, crc=good))[0])
    with pytest.raises(ChecksumMismatch):
        sync.on_delta(proto.parse(frame("update", 10, 11, asks=[["101", "2", "0", "1"]], crc=good))[0])


def test_depth_is_fixed_at_400_so_the_book_is_never_cut_below_okx():
    assert OKX_SPOT.depths == (400,) and OKX_SPOT.default_depth == 400
    with pytest.raises(ConfigError, match="depth: must be one of 400"):
        load_config_text('[venues.okx_spot]\nsymbols = ["BTC-USDT"]\ndepth = 25\n')
    # what a cut book would do: the checksum over the top 25 fails as levels move up
    with pytest.raises(ChecksumMismatch):
        replay(book_frames(("BTC-USDT",)), ("BTC-USDT",), depth=25)


# --- the seqId chain, on synthetic frames in the real field order ----------------------


def frame(action, prev, seq, *, bids=(), asks=(), crc=0, inst="BTC-USDT", ts="1597026383085") -> str:
    """A ``books`` push exactly as OKX writes it: ``…"ts":…,"checksum":…,"prevSeqId":…,"seqId":…``."""
    lv = lambda levels: ",".join("[" + ",".join(f'"{x}"' for x in (list(level) + ["0", "1"])[:4]) + "]" for level in levels)
    return (f'{{"arg":{{"channel":"books","instId":"{inst}"}},"action":"{action}","data":[{{'
            f'"asks":[{lv(asks)}],"bids":[{lv(bids)}],"ts":"{ts}","checksum":{crc},"prevSeqId":{prev},"seqId":{seq}}}]}}')


def test_synthetic_frames_have_the_real_field_order():
    text = frame("update", 123456, 123457, asks=[["8476.98", "415", "0", "13"]])
    assert list(orjson.loads(text)["data"][0]) == ["asks", "bids", "ts", "checksum", "prevSeqId", "seqId"]
    assert list(orjson.loads(text)) == ["arg", "action", "data"]


@pytest.mark.parametrize(
    "name,chain,want",
    [
        # the documented example: snapshot, normal update, no-change update, maintenance reset, update
        ("TC0 documented", [(-1, 10), (10, 15), (15, 15), (15, 3), (3, 5)], ["APPLY"] * 4),
        ("TC1 big ids", [(-1, 335226848531), (335226848531, 335226848538), (335226848538, 335226848600)], ["APPLY"] * 2),
        ("TC2 keepalive twice", [(-1, 7), (7, 7), (7, 7), (7, 9)], ["APPLY"] * 3),
        ("TC3 reset to 0", [(-1, 50), (50, 0), (0, 4)], ["APPLY"] * 2),
        ("TC4 gap", [(-1, 10), (10, 15), (16, 20)], ["APPLY", "GAP"]),
        ("TC5 replayed update", [(-1, 10), (10, 15), (10, 15)], ["APPLY", "GAP"]),
        ("TC6 missed reset", [(-1, 10), (10, 15), (3, 5)], ["APPLY", "GAP"]),
        ("TC7 first update does not chain", [(-1, 10), (9, 12)], ["GAP"]),
        ("TC8 keepalive with the wrong id", [(-1, 10), (11, 11)], ["GAP"]),
    ],
)
def test_ws_chain_table(name, chain, want):
    (snap_prev, snap_seq), updates = chain[0], chain[1:]
    proto = feed()
    (snap,) = proto.parse(frame("snapshot", snap_prev, snap_seq))
    seq = proto.new_sequencer("BTC-USDT")
    assert seq.on_snapshot(snap, [])
    got = []
    for prev, s in updates:
        (delta,) = proto.parse(frame("update", prev, s))
        got.append(seq.check(delta).name)
        if got[-1] == "GAP":
            break
    assert got == want, name


@pytest.mark.parametrize(
    "name,snapshot_seq,chain,want",
    [
        # REST-seeded: drop seqId <= snapshot seqId; then prevSeqId <= snap < seqId bridges
        ("TC0 bridge inside", 100, [(90, 95), (95, 100), (100 - 2, 103), (103, 110)], ["SKIP", "SKIP", "APPLY", "APPLY"]),
        ("TC1 bridge exactly", 100, [(100, 104), (104, 104), (104, 2), (2, 9)], ["APPLY"] * 4),
        ("TC2 stream ahead", 100, [(101, 105)], ["GAP"]),
        ("TC3 keepalive at the snapshot", 100, [(100, 100), (100, 120)], ["APPLY", "APPLY"]),
        ("TC4 after bridging the rule is exact", 100, [(95, 105), (104, 108)], ["APPLY", "GAP"]),
    ],
)
def test_rest_chain_table(name, snapshot_seq, chain, want):
    chain_ = SeqIdChain(rest=True)
    assert chain_.on_snapshot(Snapshot("X", [], [], snapshot_seq), [])
    got = [chain_.check(Delta("X", [], [], s, s, p)).name for p, s in chain]
    assert got == want, name


def test_rest_snapshot_older_than_the_buffered_stream_is_fetched_again():
    proto = feed(rest_snapshot=True)
    sync = SymbolSync("BTC-USDT", 400, proto.new_sequencer("BTC-USDT"), proto.verify, True)
    for prev, seq in [(200, 210), (210, 230), (230, 231)]:
        sync.on_delta(proto.parse(frame("update", prev, seq, asks=[["101", str(seq)]]))[0])
    with pytest.raises(SnapshotTooOld):  # snapshot seqId 150 < prevSeqId 200 of the first buffered update
        sync.on_snapshot(Snapshot("BTC-USDT", [("100", "1")], [("101", "1")], 150))
    sync.on_snapshot(Snapshot("BTC-USDT", [("100", "1")], [("101", "1")], 215))
    assert sync.live and sync.update_id == 231
    assert sync.book.top_asks() == [("101", "231")]  # (200, 210) dropped, (210, 230) bridged, (230, 231) chained


def test_ws_gap_raises_sequence_gap_in_sync():
    proto = feed()
    sync = SymbolSync("BTC-USDT", 400, proto.new_sequencer("BTC-USDT"), proto.verify, False)
    sync.on_snapshot(proto.parse(frame("snapshot", -1, 10, bids=[["100", "1"]], asks=[["101", "1"]]))[0])
    sync.on_delta(proto.parse(frame("update", 10, 15))[0])
    with pytest.raises(SequenceGap):
        sync.on_delta(proto.parse(frame("update", 16, 20))[0])


# --- the parser --------------------------------------------------------------------------


def test_parser_handles_text_pong_acks_and_errors():
    proto = feed(("BTC-USDT",))
    assert proto.parse("pong") == [BEAT]
    assert proto.parse('{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}') == []  # 2022: no connId
    ack = '{"id":"1","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}'
    assert proto.parse(ack) == [] and proto.parse(ack) == []  # duplicate acks are fine
    with pytest.raises(VenueRejected, match="60018"):  # names no instrument of ours: the connection's
        proto.parse('{"event":"error","msg":"Subscribe failed, wrong URL or channel:books,instId:NOPE doesn\'t exist.","code":"60018","connId":"b2b0944b"}')
    with pytest.raises(VenueRejected, match="60012"):
        proto.parse('{"id":"1512","event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}')
    with pytest.raises(VenueRejected, match="60011"):
        proto.parse('{"event":"error","msg":"Please log in","code":"60011","connId":"a4d3ae55"}')


@pytest.mark.parametrize("msg", [
    # the documented text, and the shorter ones OKX has sent (no arg in any of them)
    "Subscribe failed, wrong URL or channel:books,instId:XYZ-USDT doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
    "Wrong URL or channel:books,instId:XYZ-USDT doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
    "channel:books,instId:XYZ-USDT doesn't exist",
])
def test_an_error_naming_one_of_our_instruments_rejects_that_symbol(msg):
    proto = feed(("BTC-USDT", "xyz-usdt"))
    (fault,) = proto.parse(orjson.dumps({"event": "error", "msg": msg, "code": "60018", "connId": "b2b0944b"}))
    assert type(fault) is SymbolRejected and fault.symbol == "xyz-usdt" and fault.reason == "rejected"
    assert str(fault) == f"xyz-usdt: venue error 60018: {msg}"  # the venue's text, for /health
    (by_arg,) = proto.parse('{"id":"3","event":"error","code":"60018","msg":"x","arg":{"channel":"books","instId":"BTC-USDT"}}')
    assert by_arg.symbol == "BTC-USDT"


def test_resubscribe_frames_and_the_480_requests_budget():
    proto = feed(("BTC-USDT", "ETH-USDT"))
    proto.subscribe()
    unsub, sub = proto.resubscribe("ETH-USDT")
    assert [orjson.loads(f.frame) for f in (unsub, sub)] == [
        {"id": "2", "op": "unsubscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]},
        {"id": "3", "op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}]
    assert unsub.symbols == sub.symbols == ("ETH-USDT",)
    (retry,) = proto.resubscribe("BTC-USDT", unsubscribe=False)  # a refused symbol's retry
    assert orjson.loads(retry.frame)["op"] == "subscribe" and proto.ops == 4
    proto.resubscribe("BTC-USDT", unsubscribe=False)
    while proto.ops + 2 < OPS_PER_CONNECTION:
        assert len(proto.resubscribe("BTC-USDT")) == 2
    assert proto.ops == OPS_PER_CONNECTION - 1
    assert proto.resubscribe("BTC-USDT") is None  # two more would pass 480: the connection starts afresh
    assert len(proto.resubscribe("BTC-USDT", unsubscribe=False)) == 1  # one more fits
    assert proto.ops == OPS_PER_CONNECTION and proto.resubscribe("BTC-USDT", unsubscribe=False) is None
    assert feed(("BTC-USDT",)).resubscribe("BTC-USDT") is not None  # a new connection has its own budget
    (planned,) = proto.parse('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}')
    assert type(planned) is Planned and "64008" in planned.why  # a planned end: make-before-break
    with pytest.raises(ValueError):  # truncated JSON; the session reports it as a bad frame
        proto.parse('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"upd')


def test_parser_ignores_other_channels_and_instruments():
    proto = feed(("BTC-USDT",))
    tickers = next(r["frame"] for r in records(CAPTURE) if '"channel":"tickers","instId":"BTC-USDT"},"data"' in r["frame"])
    assert proto.parse(tickers) == [UNKNOWN]  # another channel: counted
    assert proto.parse(frame("snapshot", -1, 1, inst="ETH-USDT")) == [UNREQUESTED]  # counted by the reader


def test_parser_maps_fields_and_keeps_text():
    proto = feed(("BTC-USDT",))
    (snap,) = proto.parse(frame("snapshot", -1, 335226848531, bids=[["8476.97", "256", "0", "12"]], asks=[["8477", "7", "0", "2"]], crc=-855196043))
    assert type(snap) is Snapshot and snap.update_id == 335226848531 and snap.checksum == -855196043
    assert snap.bids == [("8476.97", "256")] and snap.asks == [("8477", "7")]
    assert snap.exchange_ts == pytest.approx(1597026383.085)
    (upd,) = proto.parse(frame("update", 335226848531, 335226848538, asks=[["8477", "0", "0", "0"]]))
    assert type(upd) is Delta and (upd.prev_id, upd.first_id, upd.final_id) == (335226848531, 335226848538, 335226848538)
    assert upd.asks == [("8477", "0")]


@pytest.mark.parametrize(
    "text",
    [
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"bids":[],"ts":"1","checksum":0,"prevSeqId":-1,"seqId":"10"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[[8476.98,"1","0","1"]],"bids":[],"ts":"1","checksum":0,"prevSeqId":-1,"seqId":10}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["8476.98"]],"bids":[],"ts":"1","checksum":0,"prevSeqId":-1,"seqId":10}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":{"asks":[],"bids":[]}}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[{"asks":[],"bids":[],"ts":"1","checksum":0,"prevSeqId":-1,"seqId":10}]}',
        '["not", "an", "object"]',
    ],
)
def test_parser_rejects_malformed_book_frames(text):
    with pytest.raises(BadFrame):
        feed().parse(text)


def test_update_before_any_snapshot_needs_the_rest_seeded_mode():
    with pytest.raises(SequenceGap, match="rest_snapshot"):
        feed().parse(frame("update", 10, 15))
    rest = feed(rest_snapshot=True)
    assert rest.rest_snapshots
    assert rest.parse(frame("snapshot", -1, 10)) == []  # REST-seeded: the pushed snapshot is ignored
    (upd,) = rest.parse(frame("update", 10, 15))
    assert type(upd) is Delta


def test_connection_url_subscribe_and_rest_snapshot():
    symbols = tuple(f"C{i}-USDT" for i in range(29))
    proto = feed(symbols)
    assert proto.url == "wss://ws.okx.com/ws/v5/public"  # port 8443 retired
    assert ":8443" not in get_venue("okx_spot").ws_url
    (sub,) = proto.subscribe()
    msg = orjson.loads(sub.frame)
    assert msg["op"] == "subscribe" and msg["args"][0] == {"channel": "books", "instId": "C0-USDT"}
    assert len(msg["args"]) == 29 and len(sub.frame) < 64 * 1024 and sub.symbols == symbols
    assert proto.ops == 1  # of the 480 per connection per hour
    assert proto.snapshot_url("BTC-USDT") == "https://openapi.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400"
    assert not proto.rest_snapshots


def test_parse_rest_snapshot_of_the_documented_shape():
    proto = feed(rest_snapshot=True)
    body = (b'{"code":"0","msg":"","data":[{"asks":[["41006.8","0.60038921","0","1"]],'
            b'"bids":[["41006.3","0.30178218","0","2"]],"ts":"1629966436396","seqId":3235851742}]}')
    snap = proto.parse_snapshot("BTC-USDT", body)
    assert snap.update_id == 3235851742 and snap.asks == [("41006.8", "0.60038921")] and snap.checksum is None
    with pytest.raises(SymbolRejected, match="BTC-USDT: snapshot refused: code 51001: Instrument ID does not exist"):
        proto.parse_snapshot("BTC-USDT", b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}')
    with pytest.raises(SnapshotUnusable, match="code 50011"):  # any other refusal: this book's snapshot alone
        proto.parse_snapshot("BTC-USDT", b'{"code":"50011","msg":"Too Many Requests","data":[]}')
    with pytest.raises(BadFrame):
        proto.parse_snapshot("BTC-USDT", b'{"code":"0","msg":"","data":[{"asks":[],"bids":[],"ts":"1"}]}')


def test_venue_limits_and_heartbeat_follow_the_doc():
    v = get_venue("okx_spot")
    assert v.max_symbols_per_connection == 29  # "fewer than 30" deep channels per connection
    assert v.connect_budget == (3, 1.0)  # 3 connections per second per IP
    assert v.rest_budget.weight_per_minute == 1200  # 40 requests per 2 s
    hb = v.heartbeat
    assert (hb.ping_text, hb.ping_interval, hb.ping_when_idle, hb.pong_on) == ("ping", 25.0, True, "any")
    assert hb.ping_interval + hb.pong_timeout <= 30.0  # before OKX's own 30 s cut-off
    cfg = load_config_text('[venues.okx_spot]\nsymbols = ["BTC-USDT"]\n[venues.okx_spot.options]\nrest_snapshot = true\n')
    assert cfg.venues["okx_spot"].options == {"rest_snapshot": True}
    with pytest.raises(ConfigError, match="rest_snapshot: expected bool"):
        load_config_text('[venues.okx_spot]\nsymbols = ["BTC-USDT"]\n[venues.okx_spot.options]\nrest_snapshot = "yes"\n')


def test_checksum_of_sides_of_any_length_matches_the_documented_interleaving():
    import random
    import zlib

    from trio_books.venues.okx import checksum

    def by_the_doc(bids, asks):  # bid:ask pairs while both sides last, then the rest of the longer
        parts = []
        for i in range(25):
            if i < len(bids):
                parts.append(f"{bids[i][0]}:{bids[i][1]}")
            if i < len(asks):
                parts.append(f"{asks[i][0]}:{asks[i][1]}")
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc

    rng = random.Random(7)
    for nb, na in [(0, 0), (0, 3), (3, 0), (2, 30), (30, 2), (25, 25), (40, 40)] + [(rng.randint(0, 40), rng.randint(0, 40)) for _ in range(50)]:
        bids = [(f"{100 - i * 0.1:.1f}", f"{rng.random():.4f}") for i in range(nb)]
        asks = [(f"{101 + i * 0.1:.1f}", f"{rng.random():.4f}") for i in range(na)]
        assert checksum(bids, asks) == by_the_doc(bids, asks), (nb, na)
