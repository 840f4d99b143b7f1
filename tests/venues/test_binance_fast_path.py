"""The Binance parser's typed fast path (msgspec) decides exactly as the general
path does, on any frame: same events, same ids, same levels, same errors."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_books.model import Delta
from trio_books.venues import ConnectionSpec, get_venue

SYMBOLS = ("BTCUSDT", "ETHUSDT")

ints = st.one_of(st.integers(0, 2**63 - 1), st.integers(-5, 5), st.just(2**64 + 1))
numeric_text = st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{0,8})?\Z")
strings = st.one_of(numeric_text, st.sampled_from(["", "abc", "1e5", " 1", "-1", "١٢"]))
json_values = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False), strings)
level = st.one_of(
    st.tuples(numeric_text, numeric_text).map(list),
    st.lists(st.one_of(strings, ints), min_size=0, max_size=3),
    strings,
    ints,
)
levels = st.one_of(st.lists(level, max_size=4), json_values)

good_levels = st.lists(st.tuples(numeric_text, numeric_text).map(list), max_size=4)
# key: (a value the venue would send, anything else); most draws are good, so
# frames the fast path accepts are common, and each differs in a few places
FIELDS = {
    "e": (st.just("depthUpdate"), st.one_of(st.sampled_from(["bookTicker", "serverShutdown", ""]), ints)),
    "E": (st.integers(0, 2**53), json_values),
    "T": (st.integers(0, 2**53), json_values),
    "s": (st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]), st.one_of(json_values, st.just(["BTCUSDT"]))),
    "U": (st.integers(0, 2**62), json_values),
    "u": (st.integers(0, 2**62), json_values),
    "pu": (st.integers(0, 2**62), json_values),
    "b": (good_levels, levels),
    "a": (good_levels, levels),
    "x": (json_values, json_values),  # a key neither path knows
}


@st.composite
def frames(draw) -> str:
    """JSON text, built by hand so that keys can repeat, go missing or come in any order."""
    wild_keys = draw(st.sets(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2))  # one or two fields go wrong
    pairs = []
    for key, (good, wild) in FIELDS.items():
        for _ in range(draw(st.sampled_from([1] * 8 + [0, 2]))):  # usually once; sometimes absent or twice
            pairs.append((key, draw(wild if key in wild_keys else good)))
    pairs = draw(st.permutations(pairs))
    data = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in pairs) + "}"
    shape = draw(st.sampled_from(["combined"] * 6 + ["raw", "not-an-object"]))
    if shape == "combined":
        return '{"stream":"btcusdt@depth@100ms","data":' + data + "}"
    if shape == "raw":
        return data
    return "[" + data + "]"


def outcome(parse, raw: str):
    try:
        items = parse(raw)
    except Exception as exc:  # the session turns any of these into BadFrame; the type must agree
        return ("raises", type(exc).__name__)
    out = []
    for item in items:
        if type(item) is Delta:
            norm = [list(x) if isinstance(x, (list, tuple)) else x for x in item.bids], [
                list(x) if isinstance(x, (list, tuple)) else x for x in item.asks
            ]
            out.append(("delta", item.symbol, norm, item.first_id, item.final_id, item.prev_id, item.exchange_ts, item.checksum, item.extra))
        else:
            out.append(item)
    return out


def _event(**changes) -> str:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 5, "u": 7, "pu": 4, "b": [["1.5", "2"]], "a": []}
    data.update(changes)
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data})


@settings(max_examples=600, deadline=None)
@example(raw=_event(), venue="binance_futures")
@example(raw=_event(e="bookTicker"), venue="binance_spot")  # another event of the same shape
@example(raw=_event(U="5"), venue="binance_spot")  # an id as text
@example(raw=_event(E=1.5), venue="binance_spot")  # a time that is not an integer
@example(raw=_event(pu=2**64 + 1), venue="binance_futures")  # beyond 64 bits (a float to orjson)
@example(raw=_event(b=[["1.5", "2", "3"]]), venue="binance_spot")  # a level of three
@given(raw=frames(), venue=st.sampled_from(["binance_spot", "binance_futures", "asterdex_futures"]))
def test_fast_path_and_general_path_agree_on_any_frame(raw, venue):
    proto = get_venue(venue).connect(ConnectionSpec("wss://x", "https://x", SYMBOLS, 1000))
    assert outcome(proto.parse, raw) == outcome(proto._parse_any, raw)


def test_fast_path_takes_the_documented_event_and_keeps_levels_as_pairs():
    proto = get_venue("binance_futures").connect(ConnectionSpec("wss://x", "https://x", SYMBOLS, 1000))
    raw = ('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT",'
           '"U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}')
    (ev,) = proto.parse(raw)
    assert ev == Delta("BTCUSDT", [("0.0024", "10")], [("0.0026", "100")], 157, 160, 149, 123456.789)
    assert len(ev) == len(Delta._fields)  # built with tuple.__new__: every field present
