"""Binance USD-M futures parsing and sequencing, from the real capture and from tables. No sockets."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tests.capture import records
from trio_books.config import ConfigError, load_config_text
from trio_books.errors import BadFrame, SequenceGap, VenueRejected
from trio_books.model import UNKNOWN, Delta, Planned, Snapshot, Verdict
from trio_books.supervise import connection_groups
from trio_books.sync import SnapshotTooOld, SymbolSync
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.binance import BINANCE_FUTURES, FuturesChain, SpotChain, futures_weight

CAPTURE = "binance_futures/binance_usdm_depth100ms_4sym_20210722_cryptofeed.capture.jsonl.gz"
SYMBOLS = ("SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT")
CHECKED_TICKERS = 50  # every bookTicker whose u is the u of a depth event in the capture


def feed(symbols=SYMBOLS, depth=1000):
    return get_venue("binance_futures").connect(ConnectionSpec("wss://fstream.binance.com", "https://fapi.binance.com", symbols, depth))


class Counting:
    """Wraps a sequencer and sorts its verdicts: stale skips, the bridging
    first event, then the ``pu`` links (each checked against the previous ``u``)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seen: Counter[str] = Counter()
        self.first_applied: Delta | None = None
        self.prev_final: int | None = None

    def on_snapshot(self, snap, buffered):
        return self.inner.on_snapshot(snap, buffered)

    def check(self, delta):
        bridged = self.inner.bridged
        verdict = self.inner.check(delta)
        if verdict is Verdict.APPLY:
            if bridged:
                assert delta.prev_id == self.prev_final
                self.seen["link"] += 1
            else:
                self.first_applied = delta
                self.seen["bridge"] += 1
            self.prev_final = delta.final_id
        else:
            self.seen[verdict.name] += 1
        return verdict


def replay(recs, proto=None, chain=FuturesChain):
    """Feed the capture through the core's per-symbol sync, exactly as the
    session would (REST records where their responses arrived)."""
    proto = proto or feed()
    seqs = {s: Counting(chain()) for s in SYMBOLS}
    syncs = {s: SymbolSync(s, 1000, seqs[s], proto.verify, True) for s in SYMBOLS}
    tops: dict[tuple[str, int], tuple] = {}
    tickers: dict[tuple[str, int], tuple] = {}
    for rec in recs:
        if rec["dir"] == "rest":
            symbol = re.search(r"symbol=([A-Z]+)", rec["url"]).group(1)
            syncs[symbol].on_snapshot(proto.parse_snapshot(symbol, rec["frame"].encode()))
        elif rec["dir"] == "rx":
            if '"e":"bookTicker"' in rec["frame"]:  # the venue's own best bid/ask at update id u
                t = json.loads(rec["frame"])["data"]
                tickers[(t["s"], t["u"])] = ((t["b"], t["B"]), (t["a"], t["A"]))
            for ev in proto.parse(rec["frame"]):
                if ev is UNKNOWN:  # the capture's bookTicker stream: not a book event
                    continue
                sync = syncs[ev.symbol]
                if sync.on_delta(ev):
                    tops[(ev.symbol, ev.final_id)] = (sync.book.best_bid(), sync.book.best_ask())
                assert not sync.book.is_crossed()
    return syncs, seqs, tops, tickers


def test_capture_replays_with_the_documented_algorithm():
    syncs, seqs, tops, tickers = replay(records(CAPTURE))
    assert all(s.live for s in syncs.values())
    total = sum((s.seen for s in seqs.values()), Counter())
    # shared/realdata/README.md: 12 stale events dropped, then 752/752 applied
    # (one bridging first event per symbol, then 748 pu == previous u links)
    assert total == Counter({"link": 748, "bridge": 4, "SKIP": 12})
    # the worked example of the protocol notes: SUSHIUSDT L = 600859605926 = U of its first event
    first = seqs["SUSHIUSDT"].first_applied
    assert (first.first_id, first.final_id, first.prev_id) == (600859605926, 600859607423, 600859604824)
    assert all(s.book.is_crossed() is False and len(s.book.bids) > 100 for s in syncs.values())
    # where the venue's bookTicker names the update id of a depth event we applied,
    # our best levels are its best levels, as exact strings
    checked = 0
    for key, (bid, ask) in tickers.items():
        if key in tops:
            got_bid, got_ask = tops[key]
            assert (tuple(got_bid), tuple(got_ask)) == (bid, ask), key
            checked += 1
    assert checked == CHECKED_TICKERS


def test_every_pu_link_and_no_plus_one_rule():
    """``U`` is never the previous ``u + 1`` here: a spot-style chain fails at once."""
    with pytest.raises(SequenceGap):
        replay(records(CAPTURE), chain=SpotChain)


def flip(digits: str) -> str:
    i = len(digits) // 2
    return digits[:i] + str((int(digits[i]) + 1) % 10) + digits[i + 1 :]


@pytest.mark.parametrize("field", ["pu", "u"])
def test_flipped_update_id_digit_trips_the_chain(field):
    recs = list(records(CAPTURE))
    # a late SUSHIUSDT event with a successor: its pu (or its u, which the next pu names)
    idxs = [i for i, r in enumerate(recs) if r["dir"] == "rx" and '"s":"SUSHIUSDT"' in r["frame"] and "depthUpdate" in r["frame"]]
    idx = idxs[-10]
    frame = recs[idx]["frame"]
    digits = re.search(rf'"{field}":(\d+)', frame).group(1)
    recs[idx] = {**recs[idx], "frame": frame.replace(f'"{field}":{digits}', f'"{field}":{flip(digits)}', 1)}
    with pytest.raises(SequenceGap if field == "pu" else (SequenceGap, BadFrame)):
        replay(recs)


@pytest.mark.parametrize(
    "last,bridged,first,final,prev,want",
    [
        # before the first applied event, L = 100
        (100, False, 90, 99, 80, "SKIP"),  # step 2: u < L
        (100, False, 90, 100, 80, "APPLY"),  # u == L is kept (not <=, unlike spot) and bridges
        (100, False, 95, 105, 90, "APPLY"),  # U <= L <= u
        (100, False, 100, 105, 90, "APPLY"),  # U == L (the SUSHIUSDT case)
        (100, False, 101, 105, 99, "GAP"),  # U > L: the event does not cover L
        (100, False, 101, 105, 100, "APPLY"),  # ours: pu == L continues the snapshot exactly
        # bridged at u = 105
        (105, True, 140, 150, 105, "APPLY"),  # pu == previous u; U jumps (shared ids)
        (105, True, 106, 108, 105, "APPLY"),
        (105, True, 140, 150, 104, "GAP"),  # pu names an event we never saw
        (105, True, 106, 108, 107, "GAP"),
        (105, True, 95, 105, 90, "SKIP"),  # the event just applied, sent again
        (105, True, 95, 103, 90, "GAP"),  # an older event: its ids cannot be trusted
        (105, True, 95, 105, 91, "GAP"),  # not quite the same event
    ],
)
def test_futures_chain_table(last, bridged, first, final, prev, want):
    chain = FuturesChain(last, bridged, (95, 105, 90) if bridged else None)
    assert chain.check(Delta("X", [], [], first, final, prev)) is Verdict[want]
    assert chain.last == (final if want == "APPLY" else last)


@pytest.mark.parametrize("first,final,prev", [(None, 5, 1), (1, 5, None), (6, 5, 1)])
def test_futures_chain_rejects_impossible_ids(first, final, prev):
    with pytest.raises(BadFrame):
        FuturesChain(3, True).check(Delta("X", [], [], first, final, prev))


@pytest.mark.parametrize(
    "snapshot_id,buffered,want",
    [
        (100, [], True),
        (100, [(90, 95, 80), (96, 104, 95)], True),  # the first kept event bridges
        (100, [(90, 95, 80), (101, 104, 95)], False),  # first kept has U > L: snapshot too old
        (100, [(101, 104, 100)], True),  # ... unless its pu is L
        (100, [(120, 130, 110)], False),
        (100, [(80, 90, 70), (91, 99, 90)], True),  # all stale: wait for the live stream
    ],
)
def test_futures_snapshot_table(snapshot_id, buffered, want):
    deltas = [Delta("X", [], [], *ids) for ids in buffered]
    assert FuturesChain().on_snapshot(Snapshot("X", [], [], snapshot_id), deltas) is want


def test_snapshot_older_than_stream_is_refetched_then_bridges():
    sync = SymbolSync("X", 100, FuturesChain(), lambda b, e: True, True)
    sync.on_delta(Delta("X", [("1.0", "2")], [], 101, 104, 97))
    sync.on_delta(Delta("X", [("1.1", "3")], [], 110, 112, 104))
    with pytest.raises(SnapshotTooOld):
        sync.on_snapshot(Snapshot("X", [("1.0", "1")], [("2.0", "1")], 99))
    assert not sync.live and len(sync.buffer) == 2
    sync.on_snapshot(Snapshot("X", [("1.0", "1")], [("2.0", "1")], 102))
    assert sync.live and sync.update_id == 112
    assert sync.book.top_bids(5) == [("1.1", "3"), ("1.0", "2")]
    with pytest.raises(SequenceGap):
        sync.on_delta(Delta("X", [], [], 120, 121, 115))


def test_parser_dispatches_on_shape():
    proto = feed(("BTCUSDT",))
    assert proto.parse('{"result":null,"id":1}') == []
    assert proto.parse('{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}') == [UNKNOWN]
    with pytest.raises(VenueRejected):
        proto.parse('{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"}')
    (planned,) = proto.parse('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}')
    assert type(planned) is Planned  # a planned end: make-before-break
    with pytest.raises(BadFrame):
        proto.parse('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1,"u":2,"pu":"0","b":[],"a":[]}}')
    # the doc example, plus the ps/st keys later payloads may carry: unknown keys are ignored
    (ev,) = proto.parse('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT",'
                        '"ps":"BTCUSDT","st":1,"U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}')
    assert (ev.symbol, ev.first_id, ev.final_id, ev.prev_id) == ("BTCUSDT", 157, 160, 149)
    assert ev.bids == [("0.0024", "10")] and ev.asks == [("0.0026", "100")]  # the venue's exact text
    assert ev.exchange_ts == pytest.approx(123456.789)
    snap = proto.parse_snapshot("BTCUSDT", b'{"lastUpdateId":1027024,"E":1589436922972,"T":1589436922959,'
                                           b'"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}')
    assert snap.update_id == 1027024 and snap.bids == [["4.00000000", "431.00000000"]]


def test_connection_url_is_routed_and_subscribe_frames_follow():
    symbols = tuple(f"S{i}USDT" for i in range(250))
    proto = feed(symbols)
    # depth streams moved under /public in 2026; the unrouted URL delivers nothing
    assert proto.url.startswith("wss://fstream.binance.com/public/stream?streams=s0usdt@depth@100ms/s1usdt@depth@100ms/")
    assert proto.url.count("@depth@100ms") == 100
    subs = proto.subscribe()
    frames = [sub.frame for sub in subs]
    assert len(frames) == 2 and '"method":"SUBSCRIBE"' in frames[0] and '"id":1' in frames[0] and '"id":2' in frames[1]
    assert frames[1].count("@depth@100ms") == 50
    assert [sub.symbols for sub in subs] == [symbols[100:200], symbols[200:]]  # each book's sync clock starts with its frame
    assert proto.snapshot_url("BTCUSDT") == "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    assert feed(("BTCUSDT",), depth=50).snapshot_url("BTCUSDT").endswith("&limit=50")
    assert isinstance(proto.new_sequencer("S0USDT"), FuturesChain)


def test_documented_limits():
    v = BINANCE_FUTURES
    assert v.depths == (5, 10, 20, 50, 100, 500, 1000) and v.default_depth == 1000
    assert [futures_weight(n) for n in v.depths] == [2, 2, 2, 2, 5, 10, 20]
    assert v.rest_budget.weight_per_minute == 2400
    assert v.max_symbols_per_connection == 1024
    assert [len(g) for g in connection_groups([f"S{i}" for i in range(1500)], v.max_symbols_per_connection)] == [1024, 476]
    assert 1 / v.subscribe_spacing < 10  # 10 incoming messages per second, with room for pings
    hb = v.heartbeat
    assert hb.ping_text is None and hb.ping_interval == 30.0 and hb.pong_timeout == 10.0 and hb.watchdog == 60.0
    assert v.first_event_deadline is not None and v.first_event_deadline < hb.watchdog  # "no_data" is told apart


def test_config_accepts_only_documented_depths():
    load_config_text('[venues.binance_futures]\nsymbols = ["BTCUSDT"]\ndepth = 500\n')
    with pytest.raises(ConfigError, match=r"venues\.binance_futures\.depth: must be one of 5, 10, 20, 50, 100, 500, 1000, got 5000"):
        load_config_text('[venues.binance_futures]\nsymbols = ["BTCUSDT"]\ndepth = 5000\n')
