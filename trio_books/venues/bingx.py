"""BingX spot: gzip-compressed frames, server pings, full-depth snapshot pushes.

The protocol (``shared/protocols/bingx-spot.md``; BingX spot WebSocket docs):

* ``wss://open-api-ws.bingx.com/market``. **Every server frame is a binary frame
  holding one gzip member**, the heartbeat included. We decompress with a hard
  bound on the output (:data:`MAX_DECOMPRESSED`): a decompression bomb is a
  :class:`~trio_books.errors.BadFrame`, never an out-of-memory.
* The server pings about every 5 s. Spot sends JSON,
  ``{"ping":"<id>","time":"<text>"}``, and expects ``{"pong":"<id>","time":"<text>"}``
  back; the swap markets send the text ``Ping`` and expect ``Pong``. We answer
  both at once (a :class:`~trio_books.model.Reply`) and count each ping as
  heartbeat evidence (``BEAT``). Quiet books can go silent for long stretches,
  so the watchdog runs on the pings only: none for 60 s ends the attempt.
* One topic per subscribe frame: ``{"id":…,"reqType":"sub","dataType":"BTC-USDT@depth50"}``,
  at most 10 a second. The ack echoes the id with ``code`` 0; a non-zero
  ``code`` is a refusal: of that symbol alone when its ``id`` is one of our
  topics' (:class:`~trio_books.errors.SymbolRejected`: an unknown symbol is
  80015 "dataType not support"), of the connection otherwise
  (:class:`~trio_books.errors.VenueRejected`). A refused topic can still leak
  a data frame, so book data counts only for topics acked with code 0; a
  refused symbol is retried with a fresh ``sub``.
* ``<SYMBOL>@depth<L>`` (``L`` in 5, 10, 20, 50, 100; every 300 ms) pushes the
  **full top-L book** every time: each push is a :class:`~trio_books.model.Snapshot`
  that replaces the symbol's book. Asks arrive worst-first (descending) in the
  real frames; the book orders levels by numeric price, never by position.

Integrity: BingX has no checksum and ``@depth<L>`` has no sequence chain. What
can be checked is checked: the gzip member is whole and bounded, the ack
matches the subscription, a push carries no price twice, ``lastUpdateId`` (sent
by the current docs' frames, absent from older ones) never goes back within a
connection, and the book is never crossed (the core checks that). A push that
fails a check makes that book stale, alone; nothing is sent to rebuild it: the
next push is a whole book again (``resubscribe`` returns ``[]``).

The incremental ``@incrDepth`` channel is not offered: its spot wire shape is
unconfirmed (the docs' example is a copy-paste error) and no real capture of it
exists to test a parser against.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from typing import Final

import attrs
import orjson

from ..book import OrderBook
from ..errors import (
    BadFrame,
    SequenceGap,
    SnapshotFailed,
    SymbolRejected,
    VenueRejected,
)
from ..model import BEAT, UNKNOWN, UNREQUESTED, Delta, Reply, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, Parsed, Subscription, Venue

DEPTHS: Final = (5, 10, 20, 50, 100)
"""The levels ``@depth<L>`` accepts on spot."""
MAX_TOPICS_PER_CONNECTION: Final = 200
"""The 201st topic on a connection is refused (code 80403)."""
MAX_DECOMPRESSED: Final = 1 << 20
"""Bytes one frame may inflate to. A ``@depth100`` push is about 7 KB of JSON."""
MAX_COMPRESSED: Final = 1 << 18
"""The WebSocket message limit (bytes on the wire)."""
PING_TEXT: Final = b"Ping"
PONG_TEXT: Final = "Pong"
_GZIP: Final = 16 + zlib.MAX_WBITS  # a gzip header and trailer, nothing else


def gunzip(raw: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Inflate one whole gzip member of at most ``limit`` bytes.

    The output is bounded while inflating (``max_length``), so a bomb costs at
    most ``limit`` bytes of memory and the time to produce them.

    Raises:
        BadFrame: not gzip, corrupt, truncated, trailing bytes, or more than
            ``limit`` bytes once inflated.
    """
    inflater = zlib.decompressobj(_GZIP)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadFrame(f"not a gzip frame ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BadFrame(f"gzip frame inflates past {limit} bytes (decompression bomb?)")
    if not inflater.eof:
        raise BadFrame("truncated gzip frame")
    if inflater.unused_data:
        raise BadFrame("bytes after the gzip member")
    return out


@attrs.define
class NeverBack:
    """``@depth<L>`` pushes are snapshots without a chain; ``lastUpdateId``, when
    the frame has one, may repeat but must never decrease within a connection."""

    last: int | None = None

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        uid = snap.update_id
        if uid is not None:
            if self.last is not None and uid < self.last:
                raise SequenceGap(snap.symbol, f"lastUpdateId went back from {self.last} to {uid}")
            self.last = uid
        return True

    def check(self, delta: Delta) -> Verdict:
        raise BadFrame("bingx_spot pushes snapshots only; there is no delta to sequence")


class BingxFeed:
    """One spot market-data connection: one ``@depth<L>`` topic per symbol."""

    rest_snapshots = False

    def __init__(self, spec: ConnectionSpec) -> None:
        if spec.depth not in DEPTHS:
            raise ValueError(f"bingx_spot depth must be one of {DEPTHS}, got {spec.depth}")
        self.spec = spec
        self.symbols = spec.symbols
        self.url = spec.ws_base
        # topic ("BTC-USDT@depth50") -> the symbol as configured
        self._by_topic = {f"{s.upper()}@depth{spec.depth}": s for s in spec.symbols}
        self._topic_by_id: dict[str, str] = {}
        self._acked: set[str] = set()

    def subscribe(self) -> list[Subscription]:
        """One ``sub`` request per topic (BingX takes one ``dataType`` per request)."""
        return [self._sub(topic) for topic in self._by_topic]

    def _sub(self, topic: str) -> Subscription:
        req_id = str(uuid.uuid4())
        self._topic_by_id[req_id] = topic
        return Subscription(orjson.dumps({"id": req_id, "reqType": "sub", "dataType": topic}).decode(), (self._by_topic[topic],))

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription]:
        """A failed book needs nothing sent: every push is a full snapshot, and the
        next good one rebuilds it. A refused topic is asked for again."""
        return [] if unsubscribe else [self._sub(f"{symbol.upper()}@depth{self.spec.depth}")]

    def sent(self, frame: str) -> None:
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        if type(msg) is dict and msg.get("reqType") == "sub" and msg.get("dataType") in self._by_topic:
            self._topic_by_id[str(msg.get("id"))] = msg["dataType"]

    def parse(self, raw: str | bytes) -> list[Parsed]:
        if not isinstance(raw, (bytes, bytearray)):
            raise BadFrame("text frame: BingX sends every frame as gzip-compressed binary")
        text = gunzip(bytes(raw))
        if text == PING_TEXT:
            return [Reply(PONG_TEXT), BEAT]
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadFrame(f"not JSON after gunzip ({exc})") from None
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        if "ping" in msg:
            ping = msg["ping"]
            if type(ping) is not str and type(ping) is not int:
                raise BadFrame(f"bad ping id {ping!r}")
            pong: dict = {"pong": ping}
            if "time" in msg:
                pong["time"] = msg["time"]
            return [Reply(orjson.dumps(pong).decode()), BEAT]
        code = msg.get("code", 0)
        if type(code) is not int:
            raise BadFrame(f"bad code {code!r}")
        if code != 0:
            text = str(msg.get("msg"))[:200]
            topic = self._topic_by_id.pop(str(msg.get("id")), None)
            if topic is not None:
                raise SymbolRejected(self._by_topic[topic], f"venue error {code} for {topic}: {text}")
            raise VenueRejected(f"venue error {code}: {text}")
        data_type = msg.get("dataType")
        if type(data_type) is str and data_type and "data" in msg:
            return self._data(data_type, msg)
        req_id = msg.get("id")
        if req_id is not None:
            topic = self._topic_by_id.pop(str(req_id), None)
            if topic is not None:
                self._acked.add(topic)
            return []  # an ack
        return [UNKNOWN]  # something that is not ours

    def _data(self, topic: str, msg: dict) -> list[Parsed]:
        symbol = self._by_topic.get(topic)
        if symbol is None:
            return [UNREQUESTED]  # a topic this connection did not subscribe to
        if topic not in self._acked:  # ours, but not (yet) acked with code 0: not a live subscription
            return [UNREQUESTED]  # dropped, and counted
        data = msg["data"]
        if type(data) is not dict:
            raise BadFrame(f"{topic}: data is not a JSON object")
        bids = _levels(data.get("bids"), topic, "bids")
        asks = _levels(data.get("asks"), topic, "asks")
        uid = data.get("lastUpdateId")
        if uid is not None and (type(uid) is not int or uid < 0):
            raise BadFrame(f"{topic}: bad lastUpdateId {uid!r}")
        ts = msg.get("timestamp", msg.get("ts"))
        return [Snapshot(symbol, bids, asks, uid, ts / 1000.0 if type(ts) is int else None)]

    def new_sequencer(self, symbol: str) -> NeverBack:
        return NeverBack()

    def snapshot_url(self, symbol: str) -> str:
        raise SnapshotFailed("bingx_spot takes its snapshots from the socket")

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        raise SnapshotFailed("bingx_spot takes its snapshots from the socket")

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        return True  # no checksum at BingX


def _levels(side: object, topic: str, name: str) -> list:
    """The side's levels as sent (the book sorts them); a price twice is malformed."""
    if type(side) is not list:
        raise BadFrame(f"{topic}: {name} is not an array")
    seen = set()
    for level in side:
        if type(level) is not list or len(level) != 2 or type(level[0]) is not str or type(level[1]) is not str:
            raise BadFrame(f"{topic}: bad level {level!r} in {name}")
        seen.add(level[0])
    if len(seen) != len(side):
        raise BadFrame(f"{topic}: a price appears twice in {name}")
    return side


BINGX_SPOT: Final = Venue(
    id="bingx_spot",
    ws_url="wss://open-api-ws.bingx.com/market",
    rest_url=None,
    connect=BingxFeed,
    # The server pings every ~5 s; quiet books push nothing for 20 s and more,
    # so only pings count. No client ping: the venue's own one is the heartbeat.
    heartbeat=Heartbeat(watchdog=60.0, watchdog_on="beat"),
    max_symbols_per_connection=MAX_TOPICS_PER_CONNECTION,
    depths=DEPTHS,
    max_depth=100,
    default_depth=100,
    max_message_size=MAX_COMPRESSED,
    subscribe_spacing=0.11,  # "please do not exceed 10 subscriptions per second"
    maintains_window=True,  # it pushes the levels that enter its window: no proven-range tracking needed
    symbol_form=(r"[A-Za-z0-9]+-[A-Za-z0-9]+", "BASE-QUOTE, e.g. BTC-USDT"),
)
