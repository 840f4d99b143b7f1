"""Fuzzing every venue parser and sequencer: arbitrary frames, and real-shaped
frames with one value replaced. The only outcomes allowed are normal items or
one typed AttemptFailure (which resyncs) — never another exception, and never
a crossed book left live."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_books.demo import DEMO_SYMBOLS
from trio_books.errors import AttemptFailure
from trio_books.record import raw_of
from trio_books.model import Delta, Snapshot
from trio_books.session import parse_frame
from trio_books.sync import SnapshotTooOld, SymbolSync
from trio_books.venues import ConnectionSpec, available, get_venue

VENUES = available()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=False),
    st.sampled_from(["", "0", "-1", "1e308", "1E-8", "NaN", "Infinity", "0x10", "１２", "12.3.4", "9" * 400]),
    st.text(max_size=20),
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def new_proto(vid: str):
    venue = get_venue(vid)
    symbols = tuple(DEMO_SYMBOLS.get(vid, ["BTCUSDT"]))
    depth = venue.default_depth if venue.depths is None else venue.depths[0]
    if vid == "bingx_spot":
        depth = 20  # the captured frame's topic (BTC-USDT@depth20)
    proto = venue.connect(ConnectionSpec("wss://example.invalid", "https://example.invalid", symbols, depth))
    if vid == "bingx_spot":  # BingX data counts only for topics the venue acked with code 0
        for frame, _ in proto.subscribe():
            ack = {"code": 0, "id": json.loads(frame)["id"], "msg": "SUCCESS", "timestamp": 1760066281286}
            assert proto.parse(gzip.compress(json.dumps(ack).encode())) == []
    return proto


def feed(proto, raw, syncs) -> list:
    """What the session does with a frame, minus I/O; the items parsed."""
    items: list = []
    try:
        items = parse_frame(proto.parse, raw)
        for item in items:
            if type(item) not in (Delta, Snapshot):
                continue
            sync = syncs.get(item.symbol)
            if sync is None:
                continue
            if type(item) is Snapshot:
                sync.on_snapshot(item)
            else:
                sync.on_delta(item)
            if sync.live:
                assert not sync.book.is_crossed()
    except (AttemptFailure, SnapshotTooOld):
        pass
    return items


def syncs_for(proto):
    return {s: SymbolSync(s, 1000, proto.new_sequencer(s), proto.verify, proto.rest_snapshots) for s in proto.symbols}


class Replayed:
    """One recorded connection of a venue, fed the way the session feeds frames
    (strictly: only a typed AttemptFailure may escape :func:`feed`)."""

    def __init__(self, connect: dict) -> None:
        venue = get_venue(connect["venue"])
        spec = ConnectionSpec("ws://127.0.0.1:1", "http://127.0.0.1:1", tuple(connect["symbols"]), int(connect["depth"]),
                              connect.get("options") or {})
        self.proto = venue.connect(spec)
        self.syncs = syncs_for(self.proto)

    def apply(self, rec: dict) -> list:
        if rec["dir"] == "tx" and hasattr(self.proto, "sent"):
            self.proto.sent(rec["frame"])
        elif rec["dir"] == "rest":
            sync = self.syncs[rec["symbol"]]
            try:
                sync.on_snapshot(self.proto.parse_snapshot(rec["symbol"], rec["frame"].encode()))
            except (AttemptFailure, SnapshotTooOld):
                pass
        elif rec["dir"] == "rx":
            return feed(self.proto, raw_of(rec), self.syncs)
        return []


@pytest.fixture(scope="session")
def live_points(nine_venues) -> dict[str, tuple[dict, list[dict], list[int]]]:
    """Per venue: its first recorded connection, its records up to the moment every
    book is live, and the positions after that of frames that carry book data."""
    out = {}
    for vid in VENUES:
        recs = [r for r in nine_venues if r.get("venue") == vid]
        connect = next(r for r in recs if r["dir"] == "connect")
        recs = [r for r in recs if r.get("conn") == connect["conn"] and r["dir"] != "connect"]
        conn = Replayed(connect)
        live_at, data = None, []
        for j, rec in enumerate(recs):
            items = conn.apply(rec)
            if live_at is not None and any(type(x) in (Delta, Snapshot) for x in items):
                data.append(j)
            elif live_at is None and all(sync.live for sync in conn.syncs.values()):
                live_at = j
            if len(data) == 20:
                break
        assert live_at is not None and data, f"{vid}: the recording has no book frame after every book is live"
        out[vid] = (connect, recs, recs[: live_at + 1], data)
    return out


def mutate(doc, path_choice: int, value):
    """Replace the path_choice-th leaf of a JSON document by ``value``."""
    leaves = []

    def walk(node, setter):
        if isinstance(node, dict):
            for k in list(node):
                walk(node[k], lambda v, k=k, node=node: node.__setitem__(k, v))
        elif isinstance(node, list):
            for i in range(len(node)):
                walk(node[i], lambda v, i=i, node=node: node.__setitem__(i, v))
        else:
            leaves.append(setter)

    walk(doc, None)
    if leaves:
        leaves[path_choice % len(leaves)](value)
    return doc


@pytest.mark.parametrize("vid", VENUES)
@SETTINGS
@given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200), json_value.map(lambda v: json.dumps(v))))
def test_arbitrary_frames(vid, raw):
    proto = new_proto(vid)
    feed(proto, raw, syncs_for(proto))


def _decoded(raw: str | bytes) -> tuple[str, bool]:
    gz = isinstance(raw, bytes)
    return (zlib.decompress(raw, 47).decode() if gz else raw), gz


@pytest.mark.parametrize("vid", VENUES)
@SETTINGS
@given(data=st.data())
def test_real_frames_with_one_value_replaced_meet_live_books(vid, data, live_points):
    """Every venue's books are live (replayed from a recording of its fake) when a
    real frame with one value replaced arrives, then the frames after it: only
    typed failures, and no live book crossed."""
    connect, recs, prefix, positions = live_points[vid]
    conn = Replayed(connect)
    for rec in prefix:
        conn.apply(rec)
    assert all(sync.live for sync in conn.syncs.values())  # the property meets live books, on every venue
    at = data.draw(st.sampled_from(positions))
    text, gz = _decoded(raw_of(recs[at]))
    doc = mutate(json.loads(text), data.draw(st.integers(0, 1000)), data.draw(json_value))
    out = json.dumps(doc)
    for rec in recs[len(prefix):at]:
        conn.apply(rec)
    feed(conn.proto, gzip.compress(out.encode()) if gz else out, conn.syncs)
    for rec in recs[at + 1: at + 6]:
        conn.apply(rec)


@pytest.mark.parametrize("vid", VENUES)
@SETTINGS
@given(data=st.data())
def test_truncated_frames(vid, data, live_points):
    connect, recs, prefix, positions = live_points[vid]
    raw = raw_of(recs[data.draw(st.sampled_from(positions))])
    cut = data.draw(st.integers(0, max(0, len(raw) - 1)))
    conn = Replayed(connect)
    for rec in prefix:
        conn.apply(rec)
    feed(conn.proto, raw[:cut], conn.syncs)
