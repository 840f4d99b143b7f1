"""BingX spot parsing: gzip, pings, acks, full-depth snapshots, from the real frame. No sockets."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from decimal import Decimal

import orjson
import pytest

from tests.capture import records
from trio_books import ConfigError, load_config_text
from trio_books.errors import BadFrame, CrossedBook, SequenceGap, SymbolRejected, VenueRejected
from trio_books.model import BEAT, UNREQUESTED, Reply, Snapshot
from trio_books.sync import SymbolSync
from trio_books.testing.bingx import gzip_bomb
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.bingx import MAX_DECOMPRESSED, gunzip

CAPTURE = "bingx/bingx_spot_depth20_single_example_jkorf.capture.jsonl"
# the docs' spot ping and the pong they ask for (old spot WebSocket docs)
DOC_PING = b'{"ping":"2177c68e4d0e45679965f482929b59c2","time":"2022-06-07T16:27:36.323+0800"}'
DOC_PONG = '{"pong":"2177c68e4d0e45679965f482929b59c2","time":"2022-06-07T16:27:36.323+0800"}'
# the docs-v3 spot @depth50 example, trimmed to 3 levels per side (asks descending)
DOC_DEPTH50 = (
    b'{"code":0,"data":{"asks":[["121398.38","0.000025"],["121396.60","0.000010"],["121395.65","0.000009"]],'
    b'"bids":[["121228.61","0.000321"],["121210.43","4.538315"],["121210.42","0.000825"]],'
    b'"lastUpdateId":14669994934},"dataType":"BTC-USDT@depth50","success":true,"timestamp":1760066405887}'
)


def feed(symbols=("BTC-USDT",), depth=20):
    return get_venue("bingx_spot").connect(ConnectionSpec("wss://open-api-ws.bingx.com/market", None, symbols, depth))


def acked(symbols=("BTC-USDT",), depth=20):
    """A feed whose subscriptions the venue acked (spot ack shape)."""
    proto = feed(symbols, depth)
    for sub in proto.subscribe():
        req = orjson.loads(sub.frame)
        ack = {"code": 0, "id": req["id"], "msg": "SUCCESS", "timestamp": 1760066281286}
        assert proto.parse(gzip.compress(orjson.dumps(ack))) == []
    return proto


def capture_frame() -> str:
    (rec,) = list(records(CAPTURE))
    assert rec["dir"] == "rx"
    return rec["frame"]


def test_real_frame_parses_to_a_correctly_sorted_book():
    raw = capture_frame()
    wire = orjson.loads(raw)["data"]
    # the capture shows the order the book must not trust: asks worst-first
    ask_prices = [Decimal(p) for p, _ in wire["asks"]]
    assert ask_prices == sorted(ask_prices, reverse=True)

    (snap,) = acked().parse(gzip.compress(raw.encode()))
    assert type(snap) is Snapshot and snap.symbol == "BTC-USDT"
    assert snap.update_id is None and snap.exchange_ts is None  # this older frame has neither
    sync = SymbolSync("BTC-USDT", 20, feed().new_sequencer("BTC-USDT"), lambda b, e: True, False)
    sync.on_snapshot(snap)
    asks, bids = sync.book.top_asks(), sync.book.top_bids()
    assert len(asks) == len(bids) == 20
    assert asks[0] == ("57781.46", "1.79634") and asks[-1] == ("57781.66", "0.00002")
    assert bids[0] == ("57780.95", "0.94976") and bids[-1] == ("57780.76", "0.00085")
    assert [Decimal(p) for p, _ in asks] == sorted(Decimal(p) for p, _ in asks)
    assert [Decimal(p) for p, _ in bids] == sorted((Decimal(p) for p, _ in bids), reverse=True)
    assert sorted(asks) == sorted(tuple(x) for x in wire["asks"])  # exact strings, nothing lost
    assert sync.live and not sync.book.is_crossed()


def test_every_push_replaces_the_book():
    proto = acked()
    sync = SymbolSync("BTC-USDT", 20, proto.new_sequencer("BTC-USDT"), lambda b, e: True, False)
    (first,) = proto.parse(gzip.compress(capture_frame().encode()))
    sync.on_snapshot(first)
    later = b'{"code":0,"data":{"asks":[["57790.00","1.5"]],"bids":[["57700.10","2.25"]]},"dataType":"BTC-USDT@depth20","success":true}'
    (second,) = proto.parse(gzip.compress(later))
    sync.on_snapshot(second)
    assert sync.book.top_asks() == [("57790.00", "1.5")] and sync.book.top_bids() == [("57700.10", "2.25")]


def test_docs_example_carries_update_id_and_time():
    (snap,) = acked(depth=50).parse(gzip.compress(DOC_DEPTH50))
    assert snap.update_id == 14669994934
    assert snap.exchange_ts == pytest.approx(1760066405.887)
    assert [p for p, _ in snap.asks] == ["121398.38", "121396.60", "121395.65"]  # passed as sent; the book sorts


def test_data_only_for_acked_topics_of_this_connection():
    proto = feed()
    proto.subscribe()
    frame = gzip.compress(capture_frame().encode())
    assert proto.parse(frame) == [UNREQUESTED]  # not acked yet (a refused topic can leak one frame): dropped, counted
    other = capture_frame().replace("BTC-USDT@depth20", "BTC-USDT@depth100")
    assert acked().parse(gzip.compress(other.encode())) == [UNREQUESTED]  # a topic we did not ask for: counted
    assert len(acked().parse(frame)) == 1


def test_gzip_bomb_is_a_bad_frame_quickly_with_bounded_memory():
    bomb = gzip_bomb(32 << 20)  # 32 KB on the wire, 32 MiB inflated
    assert len(bomb) < 64 << 10
    proto = acked()
    tracemalloc.start()
    try:
        began = time.perf_counter()
        with pytest.raises(BadFrame, match="decompression bomb"):
            proto.parse(bomb)
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"bomb rejected in {took * 1000:.1f} ms, peak {peak / 2**20:.2f} MiB")
    assert peak < 4 * MAX_DECOMPRESSED  # never near the 32 MiB it would inflate to
    assert took < 1.0  # microseconds of work in practice; a generous bound


def test_gunzip_bound_is_exact():
    assert gunzip(gzip.compress(b"x" * 100), limit=100) == b"x" * 100
    with pytest.raises(BadFrame):
        gunzip(gzip.compress(b"x" * 101), limit=100)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"code":0,"dataType":"BTC-USDT@depth20","data":{}}', id="plain-json-bytes"),
        pytest.param('{"ping":"1","time":"t"}', id="text-frame"),
        pytest.param(gzip.compress(DOC_PING)[:-9], id="truncated-gzip"),
        pytest.param(gzip.compress(DOC_PING)[: len(gzip.compress(DOC_PING)) // 2], id="half-gzip"),
        pytest.param(gzip.compress(DOC_PING)[:-4] + b"\xff\xff\xff\xff", id="wrong-length-trailer"),
        pytest.param(zlib.compress(DOC_PING), id="zlib-not-gzip"),
        pytest.param(gzip.compress(DOC_PING) + b"junk", id="trailing-bytes"),
        pytest.param(gzip.compress(b"not json"), id="gzip-of-garbage"),
        pytest.param(gzip.compress(b"[1,2]"), id="not-an-object"),
        pytest.param(b"", id="empty"),
    ],
)
def test_non_gzip_and_broken_gzip_are_bad_frames(raw):
    with pytest.raises(BadFrame):
        acked().parse(raw)


def test_json_ping_gets_the_json_pong_and_counts_as_a_beat():
    assert acked().parse(gzip.compress(DOC_PING)) == [Reply(DOC_PONG), BEAT]


def test_text_ping_gets_text_pong():
    assert feed().parse(gzip.compress(b"Ping")) == [Reply("Pong"), BEAT]


def test_subscribe_is_one_topic_per_frame_with_unique_ids():
    subs = feed(("BTC-USDT", "eth-usdt"), 50).subscribe()
    assert [sub.symbols for sub in subs] == [("BTC-USDT",), ("eth-usdt",)]  # each book's clock starts with its frame
    frames = [orjson.loads(sub.frame) for sub in subs]
    assert [f["dataType"] for f in frames] == ["BTC-USDT@depth50", "ETH-USDT@depth50"]  # symbols uppercase on the wire
    assert all(f["reqType"] == "sub" for f in frames)
    assert len({f["id"] for f in frames}) == 2


def test_a_refused_topic_is_that_symbol_rejected_and_an_unattributable_refusal_the_connection():
    proto = feed(("BTC-USDT", "ETH-USDT"))
    btc, eth = [orjson.loads(sub.frame) for sub in proto.subscribe()]
    refusal = {"code": 80015, "id": eth["id"], "msg": "dataType not support", "dataType": "", "data": None}  # swap shape
    with pytest.raises(SymbolRejected, match=r"^ETH-USDT: venue error 80015 for ETH-USDT@depth20: dataType not support$") as info:
        proto.parse(gzip.compress(orjson.dumps(refusal)))
    assert info.value.symbol == "ETH-USDT" and info.value.reason == "rejected"
    ack = {"code": 0, "id": btc["id"], "msg": "SUCCESS", "timestamp": 1760066281286}
    assert proto.parse(gzip.compress(orjson.dumps(ack))) == []  # the other topic goes on
    over = {"code": 80403, "id": "not-one-of-ours", "msg": "your topic num over max 200"}
    with pytest.raises(VenueRejected, match="80403: your topic num over max 200"):
        proto.parse(gzip.compress(orjson.dumps(over)))
    with pytest.raises(VenueRejected, match="100400"):
        proto.parse(gzip.compress(b'{"code":100400,"msg":"","timestamp":1696245808833}'))


def test_a_refused_symbol_is_asked_for_again_with_a_fresh_id_and_counts_once_acked():
    proto = feed(("BTC-USDT", "ETH-USDT"))
    first = orjson.loads(proto.subscribe()[1].frame)
    with pytest.raises(SymbolRejected):
        proto.parse(gzip.compress(orjson.dumps({"code": 80015, "id": first["id"], "msg": "dataType not support"})))
    push = DOC_DEPTH50.replace(b"BTC-USDT@depth50", b"ETH-USDT@depth20")
    assert proto.parse(gzip.compress(push)) == [UNREQUESTED]  # refused: a leaked frame is not data
    assert proto.resubscribe("ETH-USDT") == []  # a failed book: the next push rebuilds it, nothing to send
    (retry,) = proto.resubscribe("ETH-USDT", unsubscribe=False)
    again = orjson.loads(retry.frame)
    assert retry.symbols == ("ETH-USDT",) and again["dataType"] == "ETH-USDT@depth20" and again["id"] != first["id"]
    assert proto.parse(gzip.compress(orjson.dumps({"code": 0, "id": again["id"], "msg": "SUCCESS"}))) == []
    (snap,) = proto.parse(gzip.compress(push))
    assert snap.symbol == "ETH-USDT"


def test_a_bad_push_fails_its_book_alone_and_the_next_good_push_rebuilds_it():
    """What the book task does with BingX pushes: a crossed push and one whose
    lastUpdateId went back fail that symbol's sync; a fresh one (the core's
    resync) takes the next push whole."""
    proto = acked(("BTC-USDT", "ETH-USDT"), depth=50)
    syncs = {s: SymbolSync(s, 50, proto.new_sequencer(s), proto.verify, False) for s in proto.symbols}

    def push(symbol: str, uid: int, bids=b'[["121228.61","0.000321"]]') -> None:
        frame = DOC_DEPTH50.replace(b"BTC-USDT", symbol.encode()).replace(b"14669994934", str(uid).encode())
        frame = frame.replace(b'[["121228.61","0.000321"],["121210.43","4.538315"],["121210.42","0.000825"]]', bids)
        (snap,) = proto.parse(gzip.compress(frame))
        syncs[symbol].on_snapshot(snap)

    push("BTC-USDT", 10)
    push("ETH-USDT", 10)
    with pytest.raises(CrossedBook, match="ETH-USDT: crossed book, best bid 121400.00 >= best ask 121395.65"):
        push("ETH-USDT", 11, b'[["121400.00","1"]]')
    syncs["ETH-USDT"] = SymbolSync("ETH-USDT", 50, proto.new_sequencer("ETH-USDT"), proto.verify, False)  # the resync
    push("BTC-USDT", 12)
    push("ETH-USDT", 12)
    assert all(sync.live and not sync.book.is_crossed() for sync in syncs.values())
    with pytest.raises(SequenceGap, match="^BTC-USDT: lastUpdateId went back from 12 to 11$"):
        push("BTC-USDT", 11)
    assert syncs["ETH-USDT"].live


def test_symbol_with_lowercase_config_maps_back():
    proto = acked(("btc-usdt",))
    (snap,) = proto.parse(gzip.compress(capture_frame().encode()))
    assert snap.symbol == "btc-usdt"


@pytest.mark.parametrize(
    "data,problem",
    [
        ('{"asks":[["1.0","1"],["1.0","2"]],"bids":[]}', "twice"),
        ('{"asks":[["1.0"]],"bids":[]}', "bad level"),
        ('{"asks":[[1.0,"1"]],"bids":[]}', "bad level"),
        ('{"asks":{"1.0":"1"},"bids":[]}', "not an array"),
        ('{"asks":[],"bids":[],"lastUpdateId":"12"}', "lastUpdateId"),
        ("null", "not a JSON object"),
    ],
)
def test_malformed_depth_data(data, problem):
    frame = '{"code":0,"data":%s,"dataType":"BTC-USDT@depth20","success":true}' % data
    with pytest.raises(BadFrame, match=problem):
        acked().parse(gzip.compress(frame.encode()))


def test_update_id_may_repeat_but_never_go_back():
    proto = acked(depth=50)
    sync = SymbolSync("BTC-USDT", 50, proto.new_sequencer("BTC-USDT"), lambda b, e: True, False)

    def push(uid: int) -> None:
        (snap,) = proto.parse(gzip.compress(DOC_DEPTH50.replace(b"14669994934", str(uid).encode())))
        sync.on_snapshot(snap)

    push(100)
    push(100)  # identical repeats happen
    push(105)
    with pytest.raises(SequenceGap, match="went back from 105 to 104"):
        push(104)


def test_venue_facts_from_the_docs():
    venue = get_venue("bingx_spot")
    assert venue.ws_url == "wss://open-api-ws.bingx.com/market" and venue.rest_url is None
    assert venue.depths == (5, 10, 20, 50, 100) and venue.default_depth == 100
    assert venue.max_symbols_per_connection == 200
    assert venue.heartbeat.watchdog == 60 and venue.heartbeat.watchdog_on == "beat"
    assert venue.heartbeat.ping_interval is None  # the server pings; we answer
    assert feed().rest_snapshots is False
    with pytest.raises(ConfigError, match="depth: must be one of 5, 10, 20, 50, 100"):
        load_config_text('[venues.bingx_spot]\nsymbols = ["BTC-USDT"]\ndepth = 30\n')
