"""Binance Spot and Binance USD-M futures: diff-depth streams plus REST snapshots.

The two differ by parameters only (endpoints, the stream route, the REST path,
request weights, the heartbeat) and by their sequencer:

* Spot (``binance-spot`` docs, "How to manage a local order book correctly"):
  buffer the stream, fetch ``/api/v3/depth``; if the snapshot's ``lastUpdateId``
  ``L`` is below the first buffered event's ``U``, fetch again; drop events with
  ``u <= L``; the first applied event has ``U <= L+1 <= u``; afterwards every
  event's ``U`` is the previous ``u + 1``.
* USD-M futures: drop events with ``u < L``; the first applied event has
  ``U <= L <= u``; afterwards every event's ``pu`` equals the previous ``u``.

AsterDEX speaks the futures protocol with its own endpoints (see ``asterdex.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import attrs
import orjson

from ..book import OrderBook
from ..errors import BadFrame, VenueClosed, VenueRejected
from ..model import Delta, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, RestBudget, Venue

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
    """Request weight of ``GET /fapi/v1/depth`` by ``limit`` (USD-M docs)."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


@attrs.define
class SpotChain:
    """Spot: ``U == previous u + 1``; stale is ``u <= L``."""

    last: int = 0
    bridged: bool = False

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        last = snap.update_id
        if last is None:
            raise BadFrame("snapshot without lastUpdateId")
        if buffered and last < buffered[0].first_id:  # type: ignore[operator]
            return False  # older than the stream: fetch again (spot step 4)
        self.last, self.bridged = last, False
        return True

    def check(self, delta: Delta) -> Verdict:
        first, final = delta.first_id, delta.final_id
        if first is None or final is None or first > final:
            raise BadFrame(f"bad update ids U={first} u={final}")
        if final <= self.last:
            return Verdict.SKIP
        if first > self.last + 1:
            return Verdict.GAP
        self.last, self.bridged = final, True
        return Verdict.APPLY


@attrs.define
class FuturesChain:
    """USD-M futures: the first event has ``U <= L <= u``; then ``pu == previous u``."""

    last: int = 0
    bridged: bool = False

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        last = snap.update_id
        if last is None:
            raise BadFrame("snapshot without lastUpdateId")
        if buffered and last < buffered[0].first_id:  # type: ignore[operator]
            return False
        self.last, self.bridged = last, False
        return True

    def check(self, delta: Delta) -> Verdict:
        first, final, prev = delta.first_id, delta.final_id, delta.prev_id
        if first is None or final is None or prev is None or first > final:
            raise BadFrame(f"bad update ids U={first} u={final} pu={prev}")
        if not self.bridged:
            if final < self.last:
                return Verdict.SKIP
            if first <= self.last <= final:
                self.last, self.bridged = final, True
                return Verdict.APPLY
            return Verdict.GAP
        if prev == self.last:
            self.last = final
            return Verdict.APPLY
        if final <= self.last:
            return Verdict.SKIP  # a replayed event already in the book
        return Verdict.GAP


@attrs.frozen
class Flavor:
    """What differs between the Binance-family venues."""

    route: str  # "" (spot) or "/public" (USD-M since the 2026 routing change)
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

    def subscribe(self) -> list[str]:
        frames = []
        rest = self._streams_later
        for i in range(0, len(rest), STREAMS_PER_SUBSCRIBE):
            frames.append(orjson.dumps({"method": "SUBSCRIBE", "params": rest[i : i + STREAMS_PER_SUBSCRIBE], "id": self._next_id}).decode())
            self._next_id += 1
        return frames

    def parse(self, raw: str | bytes) -> list:
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
                return []
            first, final, prev = data["U"], data["u"], data.get("pu")
            if type(first) is not int or type(final) is not int or (prev is not None and type(prev) is not int):
                raise BadFrame("update ids are not integers")
            bids, asks = data["b"], data["a"]
            if type(bids) is not list or type(asks) is not list:
                raise BadFrame("b/a are not arrays")
            return [Delta(symbol, bids, asks, first, final, prev, _ts(data.get("E")))]
        if kind == "serverShutdown":
            raise VenueClosed("venue announced serverShutdown")
        if "code" in data and "msg" in data:
            raise VenueRejected(f"venue error {data['code']}: {str(data['msg'])[:200]}")
        if "id" in data and "result" in data:
            return []  # SUBSCRIBE ack ({"result": null, "id": n})
        return []  # other streams/events are not ours

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


def _ts(ms: object) -> float | None:
    return ms / 1000.0 if type(ms) is int else None


SPOT: Final = Flavor(route="", depth_path="/api/v3/depth", new_sequencer=SpotChain, max_snapshot_limit=5000)
USDM: Final = Flavor(route="/public", depth_path="/fapi/v1/depth", new_sequencer=FuturesChain, max_snapshot_limit=1000)


def feed_factory(flavor: Flavor) -> Callable[[ConnectionSpec], BinanceFeed]:
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
    subscribe_spacing=0.25,  # at most 5 incoming messages per second
)

BINANCE_FUTURES: Final = Venue(
    id="binance_futures",
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    connect=feed_factory(USDM),
    heartbeat=Heartbeat(watchdog=30.0, ping_interval=10.0, pong_timeout=5.0),
    max_symbols_per_connection=200,
    depths=(5, 10, 20, 50, 100, 500, 1000),
    max_depth=1000,
    default_depth=1000,
    first_event_deadline=30.0,  # unrouted/retired URLs deliver nothing, silently
    rest_budget=RestBudget(weight_per_minute=2400, snapshot_weight=futures_weight),
    connect_budget=(300, 300.0),
    subscribe_spacing=0.25,
)
