"""Bybit V5 public spot and linear (USDT/USDC perpetuals and futures): ``orderbook.{depth}.{symbol}``.

The two products speak one protocol and differ by parameters only (the socket
path and the venue id). From the Bybit V5 docs ("WebSocket Connect",
"Orderbook", "Rate limit rules"; see ``shared/protocols/bybit-v5.md``):

* Connect to ``/v5/public/spot`` or ``/v5/public/linear``; send
  ``{"req_id":…,"op":"subscribe","args":["orderbook.200.BTCUSDT", …]}``. Spot
  takes at most 10 args per request (linear has no limit "for now"; we send 10
  per request on both). The ``args`` of one public connection together stay
  under 21,000 characters. One ack answers the whole request:
  ``{"success":true,…,"op":"subscribe"}``; ``"success":false`` carries the
  reason in ``ret_msg``: ``error:handler not found,topic:T`` (unknown symbol)
  is a :class:`~trio_books.errors.SymbolRejected` of T's symbol (of the
  request's one topic when ``ret_msg`` names none of ours; a refusal that names
  no symbol is a connection-level :class:`~trio_books.errors.VenueRejected`).
  What Bybit does with the other topics of a refused request is not
  documented: each of them that has no snapshot yet is asked for again on its
  own, and ``error:already subscribed,topic:T`` (T was subscribed after all)
  is harmless, as is ``handler not found`` for an unsubscribe.
* Depths 1, 50, 200 and 1000 on both products. Once subscribed the topic sends a
  ``snapshot``, then a ``delta`` whenever the book changes. A snapshot resets the
  book, whatever its ``u``: it also comes when Bybit re-sends the book after a
  problem on its side, and as ``u == 1`` after a service restart. Depth 1 sends
  snapshots only, re-sent unchanged (same ``u``) after 3 s without a change.
* A delta sets levels: size ``"0"`` deletes the price, any other size inserts or
  overwrites it. Its ``u`` is the previous ``u + 1``, per topic; anything else is a
  gap (resync). No checksum exists: the ``u`` chain is the integrity check.
* ``ts`` (frame generated) and ``cts`` (matching engine) are milliseconds.
* Resync of one book: unsubscribe its topic, subscribe it again; a fresh
  snapshot follows.
* Heartbeat: the client sends ``{"op":"ping"}`` every 20 s; the pong is
  ``{"success":true,"ret_msg":"pong",…,"op":"ping"}`` (``op`` is ``"ping"``).
  Bybit cuts a connection with neither ping/pong nor data after 10 minutes.

Pure: no Trio, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import orjson

from ..book import OrderBook
from ..errors import BadFrame, SequenceGap, SymbolRejected, VenueRejected
from ..model import BEAT, UNKNOWN, UNREQUESTED, Delta, Reply, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, Parsed, Subscription, Venue

DEPTHS: Final = (1, 50, 200, 1000)
"""``orderbook.{depth}`` values on spot and linear (500 was linear-only, removed 2025-09-11)."""
ARGS_PER_REQUEST: Final = 10
"""Spot: at most 10 args per subscribe request."""
ARGS_CHARS_PER_CONNECTION: Final = 21_000
"""The ``args`` of one public connection together stay under this many characters."""
MAX_TOPICS_PER_CONNECTION: Final = 400
"""400 topics of up to 49 characters (symbols of up to 34) take at most 20,800
characters of ``args`` with their JSON quotes and commas: within the 21,000."""
PING: Final = '{"op":"ping"}'
RESTART_UPDATE_ID: Final = 1
"""The ``u`` of the snapshot Bybit sends after restarting its service."""
REFUSAL: Final = re.compile(r"error:(?P<why>[^,]*),topic:(?P<topic>\S+)")
"""A failure ack's ``ret_msg`` naming a topic: ``error:handler not found,topic:orderbook.50.XYZ``."""


@attrs.define
class UpdateIdStep:
    """One topic's ``u`` chain: a snapshot (any ``u``, ``1`` after a restart) sets
    ``last``; a delta applies only when its ``u`` is ``last + 1``. Anything else
    (a lost delta, a replayed one, one before any snapshot) is a gap."""

    last: int | None = None

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        if type(snap.update_id) is not int:
            raise BadFrame("snapshot without an integer u")
        self.last = snap.update_id
        return True  # a snapshot always wins: it replaces the book

    def check(self, delta: Delta) -> Verdict:
        u = delta.final_id
        if type(u) is not int:
            raise BadFrame("delta without an integer u")
        if self.last is not None and u == self.last + 1:
            self.last = u
            return Verdict.APPLY
        return Verdict.GAP


@attrs.frozen
class Product:
    """What differs between Bybit's public products."""

    path: str  # the socket path under the host
    args_per_request: int = ARGS_PER_REQUEST


SPOT: Final = Product(path="/v5/public/spot")
LINEAR: Final = Product(path="/v5/public/linear")


class BybitFeed:
    """One public connection carrying ``orderbook.{depth}`` for some symbols."""

    rest_snapshots = False

    def __init__(self, spec: ConnectionSpec, product: Product) -> None:
        self.spec = spec
        self.product = product
        self.symbols = spec.symbols
        base = spec.ws_base
        self.url = base if base.endswith(product.path) else base + product.path
        self.topics = [f"orderbook.{spec.depth}.{s.upper()}" for s in spec.symbols]
        self._by_topic = dict(zip(self.topics, spec.symbols))
        self._topic = dict(zip(spec.symbols, self.topics))
        self._requests: dict[str, tuple[str, list[str]]] = {}  # req_id → (op, topics), until answered
        self._next_req = 0
        self._snapshotted: set[str] = set()
        self._refused: set[str] = set()  # topics reported refused since they were last asked for alone

    # --- outbound -------------------------------------------------------------------
    def subscribe(self) -> list[Subscription]:
        """Subscribe requests of at most ``args_per_request`` topics, each with a
        ``req_id`` so a refusal can name the request's topics."""
        n = self.product.args_per_request
        return [self._request("subscribe", self.topics[i : i + n]) for i in range(0, len(self.topics), n)]

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription]:
        """Resync one topic (Bybit's step 8): unsubscribe it, subscribe it again;
        a fresh snapshot follows. A refused symbol was never subscribed: only
        the subscribe goes out (``unsubscribe=False``)."""
        topic = self._topic[symbol]
        self._refused.discard(topic)
        subs = [self._request("unsubscribe", [topic])] if unsubscribe else []
        return subs + [self._request("subscribe", [topic])]

    def _request(self, op: str, args: list[str]) -> Subscription:
        self._next_req += 1
        req_id = str(self._next_req)
        self._requests[req_id] = (op, args)
        frame = orjson.dumps({"req_id": req_id, "op": op, "args": args}).decode()
        return Subscription(frame, tuple(self._by_topic[t] for t in args))

    def sent(self, frame: str) -> None:
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        if type(msg) is dict and type(msg.get("req_id")) is str and type(msg.get("args")) is list:
            self._requests[msg["req_id"]] = (str(msg.get("op")), [str(a) for a in msg["args"]])

    # --- inbound --------------------------------------------------------------------
    def parse(self, raw: str | bytes) -> list[Parsed]:
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        topic = msg.get("topic")
        if topic is not None:
            symbol = self._by_topic.get(topic)  # type: ignore[arg-type]
            if symbol is None:  # another topic than ours: a book of another symbol/depth is counted
                return [UNREQUESTED] if type(topic) is str and topic.startswith("orderbook.") else [UNKNOWN]
            return [self._book(symbol, msg)]
        op = msg.get("op")
        success = msg.get("success")
        if success is False:
            return self._refusal(op, msg)
        if op == "ping" or op == "pong":
            return [BEAT]  # the answer to our ping (spot/linear say op "ping", ret_msg "pong")
        req_id = msg.get("req_id")
        if success is True and type(req_id) is str:
            self._requests.pop(req_id, None)  # answered
        if success is True or op in ("subscribe", "unsubscribe"):
            return []  # subscribe/unsubscribe acks
        return [UNKNOWN]

    def _refusal(self, op: object, msg: dict[str, Any]) -> list[Parsed]:
        """A ``"success":false`` ack: the refused symbol's fault, nothing (a
        harmless refusal), or a :class:`VenueRejected` when no symbol can be named.
        A refused request of several topics is split: each of its other topics
        without a snapshot yet is asked for again alone (at once, as a reply)."""
        text = str(msg.get("ret_msg"))[:200]
        req_id = msg.get("req_id")
        kind, topics = self._requests.pop(req_id, (op, [])) if type(req_id) is str else (op, [])
        m = REFUSAL.match(text)
        named = m["topic"] if m is not None and m["topic"] in self._by_topic else None
        refused = named or (topics[0] if len(topics) == 1 else None)
        why = m["why"] if m is not None else None
        items: list[Parsed] = []
        if refused is not None and (why == "already subscribed" or (kind == "unsubscribe" and why == "handler not found")):
            pass  # subscribed after all / nothing to unsubscribe
        elif refused is not None and kind == "subscribe":
            if refused in self._refused:
                return []  # reported already (a request and its split both refused it)
            self._refused.add(refused)
            items.append(SymbolRejected(self._by_topic[refused], f"venue refused subscribe: {text}"))
        else:
            shown = f" (request {req_id}: {', '.join(topics[:3])}{', …' if len(topics) > 3 else ''})" if topics else ""
            raise VenueRejected(f"venue refused {kind or 'a request'}: {text}{shown}")
        if kind == "subscribe" and len(topics) > 1:
            items += [Reply(self._request("subscribe", [t]).frame) for t in topics
                      if t != refused and self._by_topic[t] not in self._snapshotted]
        return items

    def _book(self, symbol: str, msg: dict[str, Any]) -> Snapshot | Delta:
        data = msg.get("data")
        if type(data) is not dict:
            raise BadFrame("data is not a JSON object")
        u = data.get("u")
        if type(u) is not int:
            raise BadFrame(f"u is not an integer: {str(u)[:40]}")
        bids, asks = data.get("b"), data.get("a")
        if type(bids) is not list or type(asks) is not list:
            raise BadFrame("b/a are not arrays")
        if data.get("s") != self._wire(symbol):
            raise BadFrame(f"data.s {str(data.get('s'))[:40]!r} does not match the topic")
        ts = _seconds(msg.get("cts"), msg.get("ts"))
        kind = msg.get("type")
        if kind == "snapshot":
            self._snapshotted.add(symbol)
            return Snapshot(symbol, bids, asks, u, ts)
        if kind == "delta":
            if symbol not in self._snapshotted:
                raise SequenceGap(symbol, f"delta u={u} before any snapshot")
            return Delta(symbol, bids, asks, u, u, None, ts)
        raise BadFrame(f"unknown type {str(kind)[:40]!r}")

    @staticmethod
    def _wire(symbol: str) -> str:
        return symbol.upper()

    # --- sequencing; no REST, no checksum ---------------------------------------------
    def new_sequencer(self, symbol: str) -> UpdateIdStep:
        return UpdateIdStep()

    def snapshot_url(self, symbol: str) -> str:
        raise TypeError("Bybit sends its snapshots on the socket")  # never called: rest_snapshots is False

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        raise TypeError("Bybit sends its snapshots on the socket")  # never called: rest_snapshots is False

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        return True  # no checksum; the u chain is the check


def _seconds(cts: object, ts: object) -> float | None:
    """The matching-engine time ``cts`` (else the frame time ``ts``), ms → s."""
    if type(cts) is int:
        return cts / 1000.0
    if type(ts) is int:
        return ts / 1000.0
    return None


def feed_factory(product: Product) -> Callable[[ConnectionSpec], BybitFeed]:
    return lambda spec: BybitFeed(spec, product)


BYBIT_SPOT: Final = Venue(
    id="bybit_spot",
    ws_url="wss://stream.bybit.com",
    rest_url=None,
    connect=feed_factory(SPOT),
    # Ping every 20 s (the docs' recommendation); a missing pong ends the attempt
    # after 10 s. Quiet books go seconds without a frame, so the silence watchdog
    # is 60 s (pongs count as frames).
    heartbeat=Heartbeat(watchdog=60.0, ping_interval=20.0, ping_text=PING, pong_timeout=10.0, pong_on="beat"),
    max_symbols_per_connection=MAX_TOPICS_PER_CONNECTION,
    depths=DEPTHS,
    max_depth=max(DEPTHS),
    default_depth=200,
    # 500 new connections per 5 minutes per WebSocket domain; spot and linear
    # share stream.bybit.com, so each takes half.
    connect_budget=(250, 300.0),
    maintains_window=True,  # it pushes the levels that enter its window: no proven-range tracking needed
    symbol_form=(r"[A-Za-z0-9][A-Za-z0-9-]{0,29}", "BASEQUOTE, e.g. BTCUSDT"),
)

BYBIT_FUTURES: Final = attrs.evolve(BYBIT_SPOT, id="bybit_futures", connect=feed_factory(LINEAR), market="perp")
