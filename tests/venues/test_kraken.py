"""Kraken v2 parsing and checksums, from real captures and the documentation. No sockets.

The captures (``tests/data/kraken``, copied from ``shared/realdata/kraken``) carry
no ``instrument`` frames, so each replay first feeds the parser an instrument
snapshot with the pair's precisions (BTC/USD 1/8, MINA/GBP 4/8: the decimals the
captured numbers are written with).
"""

from __future__ import annotations

import json
import re
import zlib

import attrs
import pytest
import trio

from tests.capture import records
from trio_books.book import OrderBook
from trio_books.errors import BadFrame, ChecksumMismatch, StaleFeed, SymbolRejected, VenueRejected
from trio_books.heartbeat import Liveness, enforce_heartbeat
from trio_books.model import BEAT, UNKNOWN, UNREQUESTED, Delta, Reply, Snapshot
from trio_books.sync import SymbolSync
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.kraken import KRAKEN_SPOT, Precision, book_checksum, checksum_digits, pad

D10 = "kraken/kraken_v2_btcusd_d10_20260816_depthcharge_head.capture.jsonl"
D25 = "kraken/kraken_v2_btcusd_d25_20260816_depthcharge_head.capture.jsonl"
JAY = "kraken/kraken_v2_btcusd_d10_20260705_jayhere1.capture.jsonl"
MINA = "kraken/kraken_v2_minagbp_d25_resync_20260818_depthcharge.capture.jsonl"
V1 = "kraken/kraken_v1_book1000_10pairs_20210417_cryptofeed.capture.jsonl.gz"
PRECISIONS = {"BTC/USD": (1, 8), "ETH/USD": (2, 8), "MINA/GBP": (4, 8), "MATIC/USD": (4, 8)}


def instrument_frame(symbols, kind="snapshot") -> str:
    pairs = ",".join(
        f'{{"symbol":"{s}","base":"{s.split("/")[0]}","quote":"{s.split("/")[1]}","status":"online",'
        f'"qty_precision":{PRECISIONS[s][1]},"qty_increment":1e-08,"price_precision":{PRECISIONS[s][0]},'
        f'"cost_precision":5,"marginable":true,"has_index":true,"cost_min":0.5,"price_increment":0.1,"qty_min":0.0001}}'
        for s in symbols
    )
    return f'{{"channel":"instrument","type":"{kind}","data":{{"assets":[],"pairs":[{pairs}]}}}}'


def feed(symbols=("BTC/USD",), depth=10, **options):
    return get_venue("kraken_spot").connect(ConnectionSpec("wss://ws.kraken.com/v2", None, tuple(symbols), depth, options))


def ready_feed(symbols=("BTC/USD",), depth=10, **options):
    proto = feed(symbols, depth, **options)
    (reply,) = proto.parse(instrument_frame(symbols))
    assert isinstance(reply, Reply)
    return proto


class Replay:
    """Frames through the parser and the core's SymbolSync, counting checksum checks."""

    def __init__(self, symbol: str, depth: int | None, proto=None) -> None:
        self.proto = proto or ready_feed((symbol,), depth or 10)
        self.checked = self.matched = 0
        self.sync = SymbolSync(symbol, depth, self.proto.new_sequencer(symbol), self._verify, False)

    def _verify(self, book, event) -> bool:
        ok = self.proto.verify(book, event)
        self.checked += 1
        self.matched += ok
        return ok

    def frame(self, raw: str) -> list:
        events = [e for e in self.proto.parse(raw) if isinstance(e, (Snapshot, Delta))]
        for event in events:
            if isinstance(event, Snapshot):
                self.sync.on_snapshot(event)
            else:
                self.sync.on_delta(event)
            assert not self.sync.book.is_crossed()
        return events


def rx_frames(relpath):
    return [r["frame"] for r in records(relpath) if r["dir"] == "rx"]


# --- the documentation's worked examples ------------------------------------------------------
DOC_BIDS = ("45283.5 0.10000000 45283.4 1.54582015 45282.1 0.10000000 45281.0 0.10000000 45280.3 1.54592586 "
            "45279.0 0.07990000 45277.6 0.03310103 45277.5 0.30000000 45277.3 1.54602737 45276.6 0.15445238").split()
DOC_ASKS = ("45285.2 0.00100000 45286.4 1.54571953 45286.6 1.54571109 45289.6 1.54560911 45290.2 0.15890660 "
            "45291.8 1.54553491 45294.7 0.04454749 45296.1 0.35380000 45297.5 0.09945542 45299.5 0.18772827").split()

MATIC_SNAPSHOT = (
    '{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD",'
    '"bids":[{"price":0.5666,"qty":4831.75496356},{"price":0.5665,"qty":6658.22734739},{"price":0.5664,"qty":18724.91513344},'
    '{"price":0.5663,"qty":11563.92544914},{"price":0.5662,"qty":14006.65365711},{"price":0.5661,"qty":17454.85679807},'
    '{"price":0.566,"qty":18097.1547},{"price":0.5659,"qty":33644.89175666},{"price":0.5658,"qty":148.3464},'
    '{"price":0.5657,"qty":606.70854372}],'
    '"asks":[{"price":0.5668,"qty":4410.79769741},{"price":0.5669,"qty":4655.40412487},{"price":0.567,"qty":49844.89424998},'
    '{"price":0.5671,"qty":24306.41678},{"price":0.5672,"qty":29783.25223475},{"price":0.5673,"qty":57234.71239278},'
    '{"price":0.5674,"qty":45065.04744},{"price":0.5675,"qty":5912.76380354},{"price":0.5676,"qty":42514.92434778},'
    '{"price":0.5677,"qty":36304.0847022}],"checksum":2439117997}]}'
)
MATIC_UPDATE = ('{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],'
                '"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}')


def test_doc_example_btcusd():
    bids = list(zip(DOC_BIDS[::2], DOC_BIDS[1::2]))
    asks = list(zip(DOC_ASKS[::2], DOC_ASKS[1::2]))
    assert book_checksum(bids, asks, Precision(1, 8)) == 3310070434
    assert checksum_digits("45285.2", 1) == "452852" and checksum_digits("0.00100000", 8) == "100000"


def test_doc_example_matic_needs_the_instrument_precision():
    replay = Replay("MATIC/USD", 10, ready_feed(("MATIC/USD",)))
    (snap,) = replay.frame(MATIC_SNAPSHOT)
    (upd,) = replay.frame(MATIC_UPDATE)
    assert replay.checked == replay.matched == 2
    # the wire drops trailing zeros; the parser writes the pair's decimals back (padding only)
    assert ("0.5660", "18097.15470000") in snap.bids
    assert upd.bids == [("0.5657", "1098.39475580")] and upd.exchange_ts == pytest.approx(1696613755.440295)
    # the raw digits give the documented wrong answers
    raw = json.loads(MATIC_SNAPSHOT, parse_float=str)["data"][0]
    as_sent = [(x["price"], x["qty"]) for x in raw["bids"]], [(x["price"], x["qty"]) for x in raw["asks"]]
    assert book_checksum(*as_sent) == 3830085102


# --- the real captures ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "relpath,symbol,depth,checks",
    [(D10, "BTC/USD", 10, 118), (D25, "BTC/USD", 25, 52), (JAY, "BTC/USD", 10, 11), (MINA, "MINA/GBP", 25, 19)],
)
def test_every_checksum_of_the_v2_captures_matches(relpath, symbol, depth, checks):
    replay = Replay(symbol, depth)
    for raw in rx_frames(relpath):
        replay.frame(raw)
        assert len(replay.sync.book.bids) <= depth and len(replay.sync.book.asks) <= depth
    assert replay.checked == replay.matched == checks
    assert replay.sync.live


@pytest.mark.parametrize("relpath,depth", [(D10, 10), (D25, 25), (MINA, 25)])
def test_book_subscribe_is_the_captured_request(relpath, depth):
    """What the parser asks for once the precisions are in is what the capturing client sent."""
    symbol = "MINA/GBP" if relpath == MINA else "BTC/USD"
    proto = feed((symbol,), depth)
    (sub,) = proto.subscribe()
    assert json.loads(sub.frame)["params"] == {"channel": "instrument", "snapshot": True} and sub.symbols == (symbol,)
    (reply,) = proto.parse(instrument_frame((symbol,)))
    sent = next(json.loads(r["frame"]) for r in records(relpath) if r["dir"] == "tx")
    ours = json.loads(reply.text)
    assert ours["method"] == sent["method"] and ours["params"] == sent["params"]
    assert proto.parse(instrument_frame((symbol,), "update")) == []  # asked once per connection


def test_the_mina_resync_replaces_the_book_and_truncates_after_every_update():
    replay = Replay("MINA/GBP", 25)
    snapshots, entered = [], False
    for raw in rx_frames(MINA):
        snapshots += [e for e in replay.frame(raw) if isinstance(e, Snapshot)]
        bids = replay.sync.book.top_bids()
        assert len(bids) <= 25
        if len(snapshots) == 2:  # the second snapshot ends at 0.0040
            entered = entered or bids[-1] == ("0.0030", "143.33333334")
    assert len(snapshots) == 2 and replay.checked == 19
    # 0.0030 was re-sent when it entered the window, then pushed out again (no delete sent)
    assert entered and ("0.0030", "143.33333334") not in replay.sync.book.top_bids()
    assert replay.sync.book.top_bids(1) == [("0.0294", "19647.14589494")] and len(replay.sync.book.bids) == 25


def test_without_truncation_the_d10_checksums_fail():
    replay = Replay("BTC/USD", None, ready_feed(("BTC/USD",), 10))
    with pytest.raises(ChecksumMismatch):
        for raw in rx_frames(D10):
            replay.frame(raw)
    assert 1 < replay.checked < 118


def _flip_digit(text: str, which: str, index: int) -> str:
    """Change the last digit of the ``index``-th ``"which":<number>`` in ``text``."""
    matches = list(re.finditer(rf'"{which}":([0-9.]+)', text))
    m = matches[index]
    number = m.group(1)
    last = str((int(number[-1]) + 1) % 10)
    return text[: m.start(1)] + number[:-1] + last + text[m.end(1):]


@pytest.mark.parametrize("kind,which,index", [("snapshot", "qty", 3), ("snapshot", "price", 9), ("update", "qty", 0),
                                              ("update", "price", 0), ("update", "checksum", 0)])
def test_a_flipped_digit_trips_the_checksum(kind, which, index):
    frames = rx_frames(D10)
    target = next(i for i, f in enumerate(frames) if f'"type":"{kind}"' in f and (kind == "snapshot" or i > 20))
    frames[target] = _flip_digit(frames[target], which, index)
    replay = Replay("BTC/USD", 10)
    with pytest.raises(ChecksumMismatch):
        for raw in frames:
            replay.frame(raw)


def test_a_skipped_update_trips_the_checksum():
    """Kraken has no sequence ids: a lost update shows only in the checksum."""
    frames = rx_frames(D10)
    updates = [i for i, f in enumerate(frames) if '"type":"update"' in f]
    del frames[updates[5]]
    replay = Replay("BTC/USD", 10)
    with pytest.raises(ChecksumMismatch):
        for raw in frames:
            replay.frame(raw)


def test_every_v1_checksum_matches_with_the_same_routine():
    """Kraken v1 strings carry the pair's decimals already: the routine takes them as written."""
    books: dict[str, OrderBook] = {}
    checked = matched = 0
    for rec in records(V1):
        if rec["dir"] != "rx" or not rec["frame"].startswith("["):
            continue
        msg = json.loads(rec["frame"])
        pair, parts = msg[-1], [p for p in msg[1:-2] if isinstance(p, dict)]
        if "as" in parts[0] or "bs" in parts[0]:
            book = books[pair] = OrderBook(1000)
            book.apply_snapshot([tuple(x[:2]) for x in parts[0].get("bs", [])], [tuple(x[:2]) for x in parts[0].get("as", [])])
            continue
        book = books[pair]
        for part in parts:
            book.apply([tuple(x[:2]) for x in part.get("b", [])], [tuple(x[:2]) for x in part.get("a", [])])
        checked += 1
        matched += book_checksum(book.top_bids(10), book.top_asks(10)) == int(parts[-1]["c"])
        assert not book.is_crossed()
    assert checked == matched == 4269


# --- liveness ----------------------------------------------------------------------------------
async def _replay_in_time(relpath, keep) -> tuple[int, float]:
    """Replay rx frames at their captured spacing (virtual time) into a Liveness, with
    Kraken's watchdog running; return (frames, seconds replayed)."""
    proto = ready_feed(("MINA/GBP",), 25)
    frames = [r for r in records(relpath) if r["dir"] == "rx" and keep(r["frame"])]
    start = trio.current_time()
    live = Liveness(last_frame=start, last_beat=start)
    policy = attrs.evolve(KRAKEN_SPOT.heartbeat, ping_interval=None)  # the capture has no pongs
    t0 = frames[0]["ts"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(enforce_heartbeat, None, policy, live)
        for rec in frames:
            await trio.sleep_until(start + rec["ts"] - t0)
            proto.parse(rec["frame"])
            live.last_frame = trio.current_time()
        nursery.cancel_scope.cancel()
    return len(frames), frames[-1]["ts"] - t0


async def test_heartbeats_keep_the_watchdog_quiet_through_a_quiet_book(autojump_clock):
    n, seconds = await _replay_in_time(MINA, lambda f: True)
    assert n == 96 and seconds > 55  # 73 heartbeats carry it through 18 s without a book message
    assert KRAKEN_SPOT.heartbeat.watchdog_on == "any"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def test_without_the_heartbeats_the_watchdog_fires(autojump_clock):
    start = trio.current_time()
    with pytest.raises(BaseException) as info:  # the 18.2 s gap between book messages
        await _replay_in_time(MINA, lambda f: '"heartbeat"' not in f)
    assert [type(e) for e in _leaves(info.value)] == [StaleFeed]
    # the last book message before the gap came 9.8 s in; the 10 s watchdog fires at 19.8 s
    assert trio.current_time() - start == pytest.approx(19.8, abs=0.1)


# --- the parser's shapes --------------------------------------------------------------------------
def test_control_messages():
    proto = feed()
    status = rx_frames(D10)[0]
    assert '"connection_id":769405522530892351' in status and proto.parse(status) == []
    assert proto.parse('{"channel":"heartbeat"}') == []
    assert proto.parse('{"method":"pong","req_id":101,"time_in":"2022-12-25T09:30:59.123456Z","time_out":"2022-12-25T09:30:59.123456Z"}') == [BEAT]
    assert proto.parse(b'{"method":"pong"}') == [BEAT]
    ack = next(f for f in rx_frames(D10) if f.startswith('{"method":"subscribe"'))
    assert proto.parse(ack) == []
    warn = '{"method":"subscribe","result":{"channel":"instrument","snapshot":true,"warnings":["tick_size is deprecated, use price_increment"]},"success":true,"req_id":1}'
    assert proto.parse(warn) == []
    assert proto.parse('{"channel":"ticker","type":"update","data":[]}') == [UNKNOWN]  # not ours: counted


def test_a_refused_symbol_is_that_book_alone_and_a_refused_request_the_connection():
    proto = feed(("BTC/USD", "DOGE/XXX"))
    with pytest.raises(SymbolRejected, match="^DOGE/XXX: kraken refused subscribe: Currency pair not supported DOGE/XXX$") as info:
        proto.parse('{"error":"Currency pair not supported DOGE/XXX","method":"subscribe","req_id":2,"success":false,'
                    '"symbol":"DOGE/XXX","time_in":"2023-01-01T00:00:00.000000Z","time_out":"2023-01-01T00:00:00.000000Z"}')
    assert info.value.symbol == "DOGE/XXX"
    # a refused unsubscribe (of a resync) passes: the subscribe behind it decides
    assert proto.parse('{"error":"Subscription Not Found","method":"unsubscribe","success":false,"symbol":"BTC/USD"}') == []
    with pytest.raises(VenueRejected, match="Exceeded msg rate"):  # no symbol: the request's, the connection's
        proto.parse('{"error":"Exceeded msg rate","method":"subscribe","success":false}')
    with pytest.raises(VenueRejected, match="ETH/USD: Currency pair"):  # not a symbol of this connection
        proto.parse('{"error":"Currency pair not supported ETH/USD","method":"subscribe","success":false,"symbol":"ETH/USD"}')


@pytest.mark.parametrize(
    "raw",
    [
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/US',  # cut in half
        "[1,2]",
        '{"channel":"book","type":"update","data":{"symbol":"BTC/USD"}}',
        '{"channel":"book","type":"delta","data":[]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"x","qty":1}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.5}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}',  # no checksum
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":-5}]}',
        '{"channel":"instrument","type":"snapshot","data":{"pairs":[{"symbol":"BTC/USD","price_precision":1.5,"qty_precision":8}]}}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"\uff11\uff12","qty":"1"}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"5","qty":""}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":["BTC/USD"],"bids":[],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":-1,"qty":1}],"asks":[],"checksum":1}]}',
    ],
)
def test_bad_frames(raw):
    proto = ready_feed()
    with pytest.raises(BadFrame):
        events = proto.parse(raw)
        sync = SymbolSync("BTC/USD", 10, proto.new_sequencer("BTC/USD"), proto.verify, False)
        sync.on_snapshot(Snapshot("BTC/USD", [("1.0", "1.00000000")], [("2.0", "1.00000000")]))
        for e in events:
            sync.on_delta(e)


def test_book_before_instrument_is_a_bad_frame():
    with pytest.raises(BadFrame, match="before its instrument precision"):
        feed().parse(rx_frames(D10)[2])


def test_numbers_stay_exact_and_canonical():
    proto = ready_feed()
    (ev,) = proto.parse('{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":['
                        '{"price":123456789012345678.9,"qty":0.00005100},{"price":62627,"qty":1e-08},'
                        '{"price":62620.0,"qty":0}],"asks":[],"checksum":4294967295,"timestamp":"2026-08-16T23:37:05.376419Z"}]}')
    assert ev.bids == [("123456789012345678.9", "0.00005100"), ("62627.0", "0.00000001"), ("62620.0", "0.00000000")]
    assert ev.checksum == 4294967295 and ev.extra == Precision(1, 8)
    assert ev.exchange_ts == pytest.approx(1786923425.376419)
    # the checksum guide shows quoted numbers: accepted the same way
    (ev,) = proto.parse('{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],'
                        '"asks":[{"price":"45285.2","qty":"0.001"}],"checksum":"3310070434"}]}')
    assert ev.asks == [("45285.2", "0.00100000")] and ev.checksum == 3310070434 and ev.exchange_ts is None
    assert pad("0.566", 4) == "0.5660" and pad("1.23456", 2) == "1.23456" and pad("7", 0) == "7"
    assert checksum_digits("1.23456", 2) == "123"  # more decimals than the pair: Kraken's rounding


def test_data_for_other_symbols_is_ignored():
    proto = ready_feed(("BTC/USD",))
    frame = rx_frames(MINA)[3].replace("MINA/GBP", "ETH/GBP")
    assert proto.parse(frame) == [UNREQUESTED]  # dropped by the reader, counted


def test_checksum_option_off():
    proto = ready_feed(checksum=False)
    events = [e for raw in rx_frames(D10) for e in proto.parse(raw)]
    assert len(events) == 118 and all(e.checksum is None for e in events)


def test_instrument_updates_refresh_precision():
    proto = ready_feed(("MINA/GBP",), 25)
    PRECISIONS["MINA/GBP"] = (5, 8)
    try:
        proto.parse(instrument_frame(("MINA/GBP",), "update"))
    finally:
        PRECISIONS["MINA/GBP"] = (4, 8)
    (ev,) = proto.parse(rx_frames(MINA)[3])
    assert ev.extra == Precision(5, 8) and ev.bids[0] == ("0.02940", "22500.50544743")


def test_venue_spec_follows_the_doc():
    v = KRAKEN_SPOT
    assert v.ws_url == "wss://ws.kraken.com/v2" and v.rest_url is None
    assert v.depths == (10, 25, 100, 500, 1000) and v.depth_problem(50) and not v.depth_problem(1000)
    assert v.connect_budget == (150, 600.0)
    hb = v.heartbeat
    assert (hb.ping_interval, hb.ping_text, hb.pong_on, hb.watchdog_on) == (30.0, '{"method":"ping"}', "beat", "any")
    assert 5 <= hb.watchdog < 30 and hb.pong_timeout <= 15
    assert v.options == {"checksum": bool}
    proto = feed(("BTC/USD", "ETH/USD"), 500)
    assert proto.url == "wss://ws.kraken.com/v2" and proto.rest_snapshots is False
    (reply,) = proto.parse(instrument_frame(("BTC/USD", "ETH/USD")))
    assert json.loads(reply.text)["params"] == {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 500, "snapshot": True}


def test_fake_checksum_agrees_with_the_venue_routine():
    from trio_books.testing.kraken import FakeKraken

    bids = list(zip(DOC_BIDS[::2], DOC_BIDS[1::2]))
    asks = list(zip(DOC_ASKS[::2], DOC_ASKS[1::2]))
    assert FakeKraken.checksum(bids, asks) == 3310070434 == zlib.crc32(b"".join(
        (p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")).encode() for p, q in asks + bids))


def test_the_2026_captures_carry_the_pair_decimals_on_the_wire():
    """Unlike the documentation's 2023 examples (``0.566``), the captured numbers are
    written with every decimal of the pair: the parser's padding leaves them as sent."""
    proto = ready_feed()
    for raw in rx_frames(D10)[2:]:
        if '"channel":"book"' not in raw:
            continue
        item = json.loads(raw, parse_float=str)["data"][0]
        (ev,) = proto.parse(raw)
        assert list(ev.bids) == [(x["price"], x["qty"]) for x in item["bids"]]
        assert list(ev.asks) == [(x["price"], x["qty"]) for x in item["asks"]]
