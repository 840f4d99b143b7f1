"""AsterDEX futures: a parameterisation of the Binance USD-M venue. No sockets.

No real Aster capture exists (shared/protocols/asterdex-futures.md); Aster's
docs copy the USD-M event, snapshot and sync text, so the parser and the
sequencer are Binance's, fed here with Aster's documented examples and with
the USD-M capture through Aster's own feed.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.capture import records
from tests.venues.test_binance_futures import CAPTURE, SYMBOLS, replay
from trio_books.config import ConfigError, load_config_text
from trio_books.model import Delta, Snapshot, Verdict
from trio_books.supervise import connection_groups
from trio_books.venues import ConnectionSpec, get_venue
from trio_books.venues.asterdex import ASTER, ASTERDEX_FUTURES
from trio_books.venues.binance import BINANCE_FUTURES, USDM, BinanceFeed, FuturesChain, futures_weight


def feed(symbols=("BTCUSDT",), depth=1000):
    return get_venue("asterdex_futures").connect(ConnectionSpec("wss://fstream.asterdex.com", "https://fapi.asterdex.com", symbols, depth))


def test_is_the_binance_futures_venue_with_asters_parameters():
    a, b = ASTERDEX_FUTURES, BINANCE_FUTURES
    assert get_venue("asterdex_futures") is a
    assert (a.ws_url, a.rest_url) == ("wss://fstream.asterdex.com", "https://fapi.asterdex.com")
    assert ASTER.route == "" and USDM.route == "/public"  # Aster documents no routing
    assert ASTER.depth_path == "/fapi/v3/depth" and ASTER.new_sequencer is FuturesChain is USDM.new_sequencer
    proto = feed()
    assert type(proto) is BinanceFeed and isinstance(proto.new_sequencer("BTCUSDT"), FuturesChain)
    # everything not Aster's own is Binance's
    same = ("depths", "max_depth", "default_depth", "rest_budget", "first_event_deadline", "subscribe_spacing", "max_message_size")
    assert all(getattr(a, k) == getattr(b, k) for k in same)
    assert (a.max_symbols_per_connection, b.max_symbols_per_connection) == (200, 1024)
    assert a.heartbeat != b.heartbeat


def test_documented_limits():
    v = ASTERDEX_FUTURES
    assert v.depths == (5, 10, 20, 50, 100, 500, 1000)
    assert [futures_weight(n) for n in v.depths] == [2, 2, 2, 2, 5, 10, 20]
    assert v.rest_budget.weight_per_minute == 2400
    assert [len(g) for g in connection_groups([f"S{i}" for i in range(250)], v.max_symbols_per_connection)] == [200, 50]
    hb = v.heartbeat  # the server pings every 5 min (Binance: 3): our ping every 50 s
    assert hb.ping_text is None and hb.ping_interval == 50.0 and hb.pong_timeout == 10.0 and hb.watchdog == 60.0
    assert 1 / v.subscribe_spacing < 10  # 10 incoming messages per second


def test_urls_use_asters_hosts_and_paths():
    symbols = tuple(f"S{i}USDT" for i in range(150))
    proto = feed(symbols)
    assert proto.url.startswith("wss://fstream.asterdex.com/stream?streams=s0usdt@depth@100ms/")
    assert "/public" not in proto.url and proto.url.count("@depth@100ms") == 100
    ((frame, named),) = proto.subscribe()
    assert frame.startswith('{"method":"SUBSCRIBE","params":["s100usdt@depth@100ms"') and frame.endswith('"id":1}')
    assert named == symbols[100:]
    assert proto.snapshot_url("S0USDT") == "https://fapi.asterdex.com/fapi/v3/depth?symbol=S0USDT&limit=1000"
    assert feed(depth=100).snapshot_url("BTCUSDT").endswith("/fapi/v3/depth?symbol=BTCUSDT&limit=100")


def test_parses_the_documented_examples():
    proto = feed()
    # "Diff. Book Depth Streams" payload, V3 and V1 docs
    (ev,) = proto.parse('{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,'
                        '"b":[["0.0024","10"]],"a":[["0.0026","100"]]}')
    assert (ev.first_id, ev.final_id, ev.prev_id, ev.bids, ev.asks) == (157, 160, 149, [["0.0024", "10"]], [["0.0026", "100"]])
    # "Order Book" response: prices and quantities kept as the venue wrote them
    snap = proto.parse_snapshot("BTCUSDT", b'{"lastUpdateId":1027024,"E":1589436922972,"T":1589436922959,'
                                           b'"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}')
    assert snap.update_id == 1027024 and snap.asks == [["4.00000200", "12.00000000"]]
    # the partial-depth example's ids (U = 390497796, pu = 390497794: not pu + 1) chain on pu
    chain = FuturesChain()
    assert chain.on_snapshot(Snapshot("BTCUSDT", [], [], 390497800), [])
    assert chain.check(Delta("BTCUSDT", [], [], 390497796, 390497878, 390497794)) is Verdict.APPLY
    assert chain.check(Delta("BTCUSDT", [], [], 390497900, 390497950, 390497878)) is Verdict.APPLY
    assert chain.check(Delta("BTCUSDT", [], [], 390497951, 390497960, 390497949)) is Verdict.GAP


def test_the_usdm_capture_replays_through_asters_feed():
    proto = get_venue("asterdex_futures").connect(ConnectionSpec("wss://fstream.asterdex.com", "https://fapi.asterdex.com", SYMBOLS, 1000))
    syncs, seqs, _, _ = replay(records(CAPTURE), proto=proto)
    assert all(s.live for s in syncs.values())
    assert sum((s.seen for s in seqs.values()), Counter()) == Counter({"link": 748, "bridge": 4, "SKIP": 12})


def test_config_accepts_only_documented_depths():
    load_config_text('[venues.asterdex_futures]\nsymbols = ["BTCUSDT"]\ndepth = 20\n')
    with pytest.raises(ConfigError, match=r"venues\.asterdex_futures\.depth: must be one of 5, 10, 20, 50, 100, 500, 1000, got 200"):
        load_config_text('[venues.asterdex_futures]\nsymbols = ["BTCUSDT"]\ndepth = 200\n')
