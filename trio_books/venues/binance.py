"""Binance Spot and Binance USD-M futures: diff-depth streams plus REST snapshots.

The two differ by parameters only (:class:`Flavor`: the stream route, the REST
path, the largest snapshot; :class:`~trio_books.venues.Venue`: endpoints,
request weights, limits, the heartbeat) and by their sequencer:

* Spot (``binance-spot`` docs, "How to manage a local order book correctly"):
  buffer the stream, fetch ``/api/v3/depth``; if the snapshot's ``lastUpdateId``
  ``L`` is below the first buffered event's ``U``, fetch again; drop events with
  ``u <= L``; the first applied event has ``U <= L+1 <= u``; afterwards every
  event's ``U`` is the previous ``u + 1`` (:class:`SpotChain`).
* USD-M futures (developers.binance.com, derivatives/usds-margined-futures,
  "How to manage a local order book correctly"): drop events with ``u < L``;
  the first applied event has ``U <= L <= u``; afterwards every event's ``pu``
  equals the previous ``u``; ``U`` is *not* the previous ``u + 1`` (update ids
  are one sequence shared by every symbol) (:class:`FuturesChain`).
  Depth streams live on the ``/public`` route since the 2026 routing change.

Each symbol has its own chain, so a gap is that book's fault alone: the core
buffers its stream again and fetches its snapshot again while the connection
and every other book go on (the docs' "restart from step 3"; the stream itself
has no hole). A symbol the venue does not list is refused by the REST snapshot
(HTTP 400, ``-1121 Invalid symbol.``) while its stream stays silent: the core
reports it ``rejected`` and retries it alone. An error reply on the socket
names no stream, so it still ends the connection (:class:`VenueRejected`).

AsterDEX speaks the futures protocol with its own endpoints (see ``asterdex.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Final

import attrs
import msgspec
import orjson

from ..book import OrderBook
from ..errors import BadFrame, VenueRejected
from ..model import UNKNOWN, UNREQUESTED, Delta, Planned, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, RestBudget, Subscription, Venue

STREAMS_IN_URL: Final = 100
"""Streams named in the connection URL; the rest are added with SUBSCRIBE frames."""
STREAMS_PER_SUBSCRIBE: Final = 100


def spot_weight(limit: int) -> int:
    """Request weight of ``GET /api/v3/depth`` by ``limit`` (spot docs)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def futures_weight(limit: int) -> int:
    """Request weight of ``GET /fapi/v1/depth`` by ``limit`` (USD-M "Order Book"
    page; AsterDEX's ``/fapi/v3/depth`` has the same table): 5, 10, 20, 50 → 2;
    100 → 5; 500 → 10; 1000 → 20."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


@attrs.define
class SpotChain:
    """Spot: ``U == previous u + 1``; before bridging, stale is ``u <= L``.

    After bridging, only an exact replay of the last applied event is skipped;
    any other event that does not continue the chain (including one whose ``u``
    is at or below the book's id) is a gap. Skipping every ``u <= last`` would
    let one corrupted, too-high ``u`` freeze the book silently.
    """

    last: int = 0
    bridged: bool = False
    last_first: int = -1

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        last = snap.update_id
        if last is None:
            raise BadFrame("snapshot without lastUpdateId")
        if buffered and last < buffered[0].first_id:  # type: ignore[operator]
            return False  # older than the stream: fetch again (spot step 4)
        self.last, self.bridged, self.last_first = last, False, -1
        return True

    def check(self, delta: Delta) -> Verdict:
        first, final = delta.first_id, delta.final_id
        if first is None or final is None or first > final:
            raise BadFrame(f"bad update ids U={first} u={final}")
        if not self.bridged:
            if final <= self.last:
                return Verdict.SKIP  # older than the snapshot (step 5)
            if first > self.last + 1:
                return Verdict.GAP
        elif first != self.last + 1:
            if first == self.last_first and final == self.last:
                return Verdict.SKIP  # the same event again
            return Verdict.GAP
        self.last, self.bridged, self.last_first = final, True, first
        return Verdict.APPLY


@attrs.define
class FuturesChain:
    """The USD-M futures chain rule (AsterDEX's docs copy it word for word).

    The documented algorithm, ``L`` being the snapshot's ``lastUpdateId``:

    1. buffer the stream, fetch the REST snapshot;
    2. drop every event with ``u < L``;
    3. the first event applied must have ``U <= L`` and ``u >= L``;
    4. afterwards every event's ``pu`` must equal the ``u`` of the previous
       event applied; otherwise the book is out of sync (resync).

    Ours, beyond the text: when the first kept event of the buffer cannot pass
    step 3 (``U > L``) the snapshot is older than the stream, so
    :meth:`on_snapshot` asks for another (the core refetches). A first event
    whose ``pu`` equals ``L`` also bridges: the previous event of this stream
    ended exactly at the snapshot (a quiet symbol whose snapshot was taken
    between two events), which is step 4's rule with the snapshot as the
    previous event. After that, only the last applied event itself, sent
    again, is skipped (a replayed frame); any other break is a gap, even an
    event wholly below the chain (its ids cannot be trusted).
    ``U`` is never compared with the previous ``u + 1`` (in the real capture it
    never is: ids are shared by all symbols).
    """

    last: int = 0
    bridged: bool = False
    applied: tuple[int, int, int] | None = None  # (U, u, pu) of the last event applied

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        last = snap.update_id
        if last is None:
            raise BadFrame("snapshot without lastUpdateId")
        for delta in buffered:
            final = delta.final_id
            if final is not None and final >= last:  # the first event step 2 keeps
                first = delta.first_id
                if first is not None and first > last and delta.prev_id != last:
                    return False  # step 3 cannot hold: the snapshot is older than the stream
                break
        self.last, self.bridged, self.applied = last, False, None
        return True

    def check(self, delta: Delta) -> Verdict:
        first, final, prev = delta.first_id, delta.final_id, delta.prev_id
        if first is None or final is None or prev is None or first > final:
            raise BadFrame(f"bad update ids U={first} u={final} pu={prev}")
        last = self.last
        if not self.bridged:
            if final < last:
                return Verdict.SKIP  # step 2
            if not (first <= last <= final or prev == last):  # step 3 (or continues the snapshot exactly)
                return Verdict.GAP
            self.bridged = True
        elif prev != last:  # step 4
            # the very event just applied, sent again, changes nothing; anything else is a break
            return Verdict.SKIP if (first, final, prev) == self.applied else Verdict.GAP
        self.last, self.applied = final, (first, final, prev)
        return Verdict.APPLY


@attrs.frozen
class Flavor:
    """What differs between the Binance-family feeds (the rest is :class:`Venue` data)."""

    route: str  # "" (spot, AsterDEX) or "/public" (USD-M since the 2026 routing change)
    depth_path: str  # REST snapshot path
    new_sequencer: Callable[[], SpotChain | FuturesChain]
    max_snapshot_limit: int
    speed: str = "@100ms"


class BinanceFeed:
    """One combined-stream connection of a Binance-family venue."""

    rest_snapshots = True

    def __init__(self, spec: ConnectionSpec, flavor: Flavor) -> None:
        self.spec = spec
        self.flavor = flavor
        self.symbols = spec.symbols
        self._by_wire = {s.upper(): s for s in spec.symbols}
        streams = [f"{s.lower()}@depth{flavor.speed}" for s in spec.symbols]
        self._streams_later = streams[STREAMS_IN_URL:]
        self.url = f"{spec.ws_base}{flavor.route}/stream?streams=" + "/".join(streams[:STREAMS_IN_URL])
        self._next_id = 1

    def subscribe(self) -> list[Subscription]:
        """SUBSCRIBE frames for the streams past the URL's first :data:`STREAMS_IN_URL`."""
        subs = []
        later = self.symbols[STREAMS_IN_URL:]
        for i in range(0, len(later), STREAMS_PER_SUBSCRIBE):
            chunk = later[i : i + STREAMS_PER_SUBSCRIBE]
            params = self._streams_later[i : i + STREAMS_PER_SUBSCRIBE]
            subs.append(Subscription(orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": self._next_id}).decode(), tuple(chunk)))
            self._next_id += 1
        return subs

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> None:
        """Never asked: a REST venue's book is rebuilt from a new REST snapshot
        while its stream stays subscribed (the documented per-symbol resync)."""
        return None

    def parse(self, raw: str | bytes) -> list:
        """One frame → ``[Delta]``, ``[UNREQUESTED]`` or ``[]`` (acks, other events).

        The hot path decodes a combined-stream ``depthUpdate`` straight into
        typed structs (msgspec checks every type in C: ids are integers, each
        level exactly two strings); anything of another shape — replies,
        errors, other events, raw streams, bad frames — takes
        :meth:`_parse_any`, which decides exactly as before.
        """
        try:
            data = _decode_depth(raw).data
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return self._parse_any(raw)
        if data.e != "depthUpdate":
            return self._parse_any(raw)
        symbol = self._by_wire.get(data.s)
        if symbol is None:
            return [UNREQUESTED]
        ms = data.E
        return [_new(Delta, (symbol, data.b, data.a, data.U, data.u, data.pu, None if ms is None else ms / 1000.0, None, None))]

    def _parse_any(self, raw: str | bytes) -> list:
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        data = msg.get("data")
        if data is None:
            data = msg  # raw (non-combined) event, a reply or an error
        if type(data) is not dict:
            raise BadFrame("data is not a JSON object")
        kind = data.get("e")
        if kind == "depthUpdate":
            symbol = self._by_wire.get(data["s"])
            if symbol is None:
                return [UNREQUESTED]
            first, final, prev = data["U"], data["u"], data.get("pu")
            if type(first) is not int or type(final) is not int or (prev is not None and type(prev) is not int):
                raise BadFrame("update ids are not integers")
            bids, asks = data["b"], data["a"]
            if type(bids) is not list or type(asks) is not list:
                raise BadFrame("b/a are not arrays")
            ms = data.get("E")
            # tuple.__new__: half the cost of Delta(...) (the hot path); all nine fields, in order
            return [_new(Delta, (symbol, bids, asks, first, final, prev, ms / 1000.0 if type(ms) is int else None, None, None))]
        if kind == "serverShutdown":  # a planned end: the replacement opens first
            return [Planned("venue announced serverShutdown")]
        if "code" in data and "msg" in data:
            raise VenueRejected(f"venue error {data['code']}: {str(data['msg'])[:200]}")
        if "id" in data and "result" in data:
            return []  # SUBSCRIBE ack ({"result": null, "id": n})
        return [UNKNOWN]  # other streams/events are not ours

    def new_sequencer(self, symbol: str) -> SpotChain | FuturesChain:
        return self.flavor.new_sequencer()

    def snapshot_url(self, symbol: str) -> str:
        limit = min(self.spec.depth, self.flavor.max_snapshot_limit)
        return f"{self.spec.rest_base}{self.flavor.depth_path}?symbol={symbol.upper()}&limit={limit}"

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        msg = orjson.loads(body)
        if type(msg) is not dict:
            raise BadFrame("snapshot is not a JSON object")
        last = msg["lastUpdateId"]
        if type(last) is not int:
            raise BadFrame("lastUpdateId is not an integer")
        bids, asks = msg["bids"], msg["asks"]
        if type(bids) is not list or type(asks) is not list:
            raise BadFrame("bids/asks are not arrays")
        return Snapshot(symbol, bids, asks, last, _ts(msg.get("E")))

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        return True  # Binance has no checksum; the update-id chain is the check


_new = tuple.__new__


_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A signed 64-bit integer (orjson reads a longer one as a float, which is no id; the
few unsigned values above it take the general path)."""


class _DepthData(msgspec.Struct, gc=False):
    """``data`` of a ``<symbol>@depth`` event as Binance documents it (other fields ignored)."""

    e: str
    s: str
    U: _Int64
    u: _Int64
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    E: _Int64 | None = None
    pu: _Int64 | None = None  # USD-M futures and AsterDEX only


class _Combined(msgspec.Struct, gc=False):
    data: _DepthData


_decode_depth = msgspec.json.Decoder(_Combined).decode


def _ts(ms: object) -> float | None:
    return ms / 1000.0 if type(ms) is int else None


SPOT: Final = Flavor(route="", depth_path="/api/v3/depth", new_sequencer=SpotChain, max_snapshot_limit=5000)
USDM: Final = Flavor(route="/public", depth_path="/fapi/v1/depth", new_sequencer=FuturesChain, max_snapshot_limit=1000)
"""USD-M: depth streams on ``wss://fstream.binance.com/public`` (the 2026 routed
endpoint; the unrouted URLs were retired on 2026-04-23), snapshots from
``GET /fapi/v1/depth`` (limit at most 1000)."""


def feed_factory(flavor: Flavor) -> Callable[[ConnectionSpec], BinanceFeed]:
    """The venue's ``connect``: one :class:`BinanceFeed` of ``flavor`` per connection."""
    return lambda spec: BinanceFeed(spec, flavor)


BINANCE_SPOT: Final = Venue(
    id="binance_spot",
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    connect=feed_factory(SPOT),
    # The server pings every 20 s (trio-websocket answers). We ping too, and a
    # connection with no frame for 15 s (liquid symbols update every 100 ms) is dead.
    heartbeat=Heartbeat(watchdog=15.0, ping_interval=10.0, pong_timeout=5.0),
    max_symbols_per_connection=1024,
    max_depth=5000,
    default_depth=1000,
    rest_budget=RestBudget(weight_per_minute=6000, snapshot_weight=spot_weight),
    connect_budget=(300, 300.0),
    max_lifetime=24 * 3600.0,  # "A single connection is only valid for 24 hours"
    subscribe_spacing=0.25,  # at most 5 incoming messages per second
)

FUTURES_DEPTHS: Final = (5, 10, 20, 50, 100, 500, 1000)
"""The only ``limit`` values ``GET /fapi/v1/depth`` accepts (Aster's ``/fapi/v3/depth`` too)."""
FUTURES_PING_INTERVAL: Final = 180.0
"""USD-M: the server pings every 3 minutes (and disconnects after 10 minutes without a pong,
which our transport sends at once)."""


def futures_heartbeat(server_ping_interval: float) -> Heartbeat:
    """Our heartbeat for a Binance-family futures venue, from the server's ping period.

    The server pings only every few minutes and our transport answers those
    pings itself, so they tell us nothing about the connection. We send our
    own RFC 6455 ping six times per server period (Binance every 30 s, Aster
    every 50 s; a ping counts against the 10 incoming messages per second, so
    we keep them rare) and end the attempt when its pong is 10 s late. A
    connection with no frame for 60 s ends too: events come only when a book
    changes, so the data watchdog is generous.
    """
    return Heartbeat(watchdog=60.0, ping_interval=server_ping_interval / 6, pong_timeout=10.0)


BINANCE_FUTURES: Final = Venue(
    id="binance_futures",
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    connect=feed_factory(USDM),
    heartbeat=futures_heartbeat(FUTURES_PING_INTERVAL),  # pings every 30 s
    max_symbols_per_connection=1024,  # "A single connection can listen to a maximum of 1024 streams"
    depths=FUTURES_DEPTHS,
    max_depth=1000,
    default_depth=1000,
    # A retired or wrong route completes the handshake and then sends nothing:
    # no depth event this soon after subscribing is a failure ("no_data").
    first_event_deadline=30.0,
    rest_budget=RestBudget(weight_per_minute=2400, snapshot_weight=futures_weight),
    connect_budget=(300, 300.0),  # not documented for fstream: spot's 300 per 5 min as a ceiling
    max_lifetime=24 * 3600.0,
    subscribe_spacing=0.15,  # 10 incoming messages per second, pings and pongs included
    market="perp",
)
