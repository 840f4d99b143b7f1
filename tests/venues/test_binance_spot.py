"""Binance Spot parsing and sequencing, from the real capture and from tables. No sockets."""

from __future__ import annotations

import re

import orjson
import pytest

from tests.capture import records
from trio_books.errors import BadFrame, SequenceGap, VenueRejected
from trio_books.model import UNKNOWN, Delta, Planned, Snapshot, Verdict
from trio_books.sync import SnapshotTooOld, SymbolSync
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.binance import SpotChain, spot_weight

CAPTURE = "binance_spot/binance_spot_depth100ms_4sym_20211012_cryptofeed.capture.jsonl"
SYMBOLS = ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")


def feed(symbols=SYMBOLS, depth=1000):
    return get_venue("binance_spot").connect(ConnectionSpec("wss://stream.binance.com:9443", "https://api.binance.com", symbols, depth))


def test_capture_replays_with_the_documented_algorithm():
    proto = feed()
    syncs = {s: SymbolSync(s, 1000, proto.new_sequencer(s), proto.verify, True) for s in SYMBOLS}
    dropped = applied = 0
    for rec in records(CAPTURE):
        if rec["dir"] == "rest":
            symbol = re.search(r"symbol=([A-Z]+)", rec["url"]).group(1)
            sync = syncs[symbol]
            buffered = list(sync.buffer)
            seq_last = proto.parse_snapshot(symbol, rec["frame"].encode()).update_id
            sync.on_snapshot(proto.parse_snapshot(symbol, rec["frame"].encode()))
            stale = [d for d in buffered if d.final_id <= seq_last]
            dropped += len(stale)
            applied += len(buffered) - len(stale)
        elif rec["dir"] == "rx":
            for ev in proto.parse(rec["frame"]):
                if ev is UNKNOWN:  # another stream of the capture: not a book event
                    continue
                sync = syncs[ev.symbol]
                if sync.live:
                    if sync.on_delta(ev):
                        applied += 1
                    else:
                        assert ev.final_id <= sync.update_id  # stale, never a gap
                        dropped += 1
                else:
                    sync.on_delta(ev)
                assert not sync.book.is_crossed()
    assert all(s.live for s in syncs.values())
    assert dropped == 5  # exactly the stale events the README lists
    assert applied == 172


def test_flipped_update_id_digit_trips_the_chain():
    recs = list(records(CAPTURE))
    # flip one digit of the U of a late NKNUSDT event (after the snapshot)
    idx = max(i for i, r in enumerate(recs) if r["dir"] == "rx" and '"s":"NKNUSDT"' in r["frame"])
    frame = recs[idx]["frame"]
    u_match = re.search(r'"U":(\d+)', frame)
    digits = u_match.group(1)
    flipped = digits[:-2] + str((int(digits[-2]) + 1) % 10) + digits[-1]
    recs[idx] = {**recs[idx], "frame": frame.replace(f'"U":{digits}', f'"U":{flipped}')}
    proto = feed()
    syncs = {s: SymbolSync(s, 1000, proto.new_sequencer(s), proto.verify, True) for s in SYMBOLS}
    with pytest.raises((SequenceGap, BadFrame)):
        for rec in recs:
            if rec["dir"] == "rest":
                symbol = re.search(r"symbol=([A-Z]+)", rec["url"]).group(1)
                syncs[symbol].on_snapshot(proto.parse_snapshot(symbol, rec["frame"].encode()))
            elif rec["dir"] == "rx":
                for ev in proto.parse(rec["frame"]):
                    if ev is not UNKNOWN:
                        syncs[ev.symbol].on_delta(ev)


@pytest.mark.parametrize(
    "last,bridged,first,final,want",
    [
        (100, False, 90, 100, "SKIP"),  # u <= L: stale
        (100, False, 95, 105, "APPLY"),  # U <= L+1 <= u: bridges
        (100, False, 101, 103, "APPLY"),  # U == L+1: bridges (seen in the capture)
        (100, False, 102, 103, "GAP"),
        (100, True, 101, 104, "APPLY"),
        (100, True, 103, 104, "GAP"),
        (100, True, 97, 100, "SKIP"),  # the last applied event again
        (100, True, 99, 100, "GAP"),  # not a replay of what was applied: resync, never freeze
        (100, True, 50, 60, "GAP"),
    ],
)
def test_spot_chain_table(last, bridged, first, final, want):
    assert SpotChain(last, bridged, 97).check(Delta("X", [], [], first, final)) is Verdict[want]


def test_a_corrupted_high_u_does_not_freeze_the_book():
    chain = SpotChain(100, True, 97)
    assert chain.check(Delta("X", [], [], 101, 99_999)) is Verdict.APPLY  # corrupted u, accepted once
    assert chain.check(Delta("X", [], [], 102, 103)) is Verdict.GAP  # the next real event exposes it


def test_snapshot_older_than_stream_is_refetched():
    chain = SpotChain()
    assert chain.on_snapshot(Snapshot("X", [], [], 99), [Delta("X", [], [], 101, 102)]) is False
    sync = SymbolSync("X", 100, SpotChain(), lambda b, e: True, True)
    sync.on_delta(Delta("X", [], [], 101, 102))
    with pytest.raises(SnapshotTooOld):
        sync.on_snapshot(Snapshot("X", [("1", "1")], [("2", "1")], 99))
    sync.on_snapshot(Snapshot("X", [("1", "1")], [("2", "1")], 101))
    assert sync.live and sync.update_id == 102


def test_parser_dispatches_on_shape():
    proto = feed(("BTCUSDT",))
    assert proto.parse('{"result":null,"id":1}') == []
    with pytest.raises(VenueRejected):
        proto.parse('{"code":2,"msg":"Invalid request: too many parameters"}')
    (planned,) = proto.parse('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}')
    assert type(planned) is Planned  # a planned end: make-before-break
    with pytest.raises(BadFrame):
        proto.parse('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":"1","u":2,"b":[],"a":[]}}')
    (ev,) = proto.parse('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"BTCUSDT","U":5,"u":7,"b":[["1.10","2"]],"a":[]}}')
    assert ev.symbol == "BTCUSDT" and (ev.first_id, ev.final_id) == (5, 7) and ev.bids == [("1.10", "2")]
    assert ev.exchange_ts == pytest.approx(1633998512.068)


def test_connection_url_and_subscribe_frames():
    symbols = tuple(f"S{i}USDT" for i in range(250))
    proto = feed(symbols)
    assert proto.url.startswith("wss://stream.binance.com:9443/stream?streams=s0usdt@depth@100ms/")
    assert proto.url.count("@depth") == 100
    subs = proto.subscribe()  # the 150 streams past the URL's 100, at most 100 per frame
    assert [sub.symbols for sub in subs] == [symbols[100:200], symbols[200:]]
    assert [orjson.loads(sub.frame) for sub in subs] == [
        {"method": "SUBSCRIBE", "params": [f"{s.lower()}@depth@100ms" for s in chunk], "id": i}
        for i, chunk in enumerate((symbols[100:200], symbols[200:]), 1)
    ]
    assert feed(symbols[:100]).subscribe() == []  # the URL names them all
    assert proto.snapshot_url("BTCUSDT") == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"


def test_request_weights_follow_the_doc():
    assert [spot_weight(n) for n in (100, 101, 500, 1000, 5000)] == [5, 25, 25, 50, 250]
