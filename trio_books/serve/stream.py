"""The WebSocket streaming API at ``/ws``.

Client → server (JSON text)::

    {"op": "subscribe", "venue": "binance_spot", "symbol": "BTCUSDT", "depth": 20, "kind": "book"}
    {"op": "unsubscribe", "venue": "binance_spot", "symbol": "BTCUSDT"}

Server → client, per subscription (``seq`` counts this subscription's messages
1, 2, 3 … with no holes, so a client can see a gap in what it received;
``version`` is the book's own change counter):

* ``{"type": "snapshot", ..., "state", "bids", "asks"}`` first, again after every
  outage, and whenever a conflated change is larger than the book;
* ``{"type": "update", ..., "bids", "asks"}``: changed levels since the previous
  message (quantity ``"0"`` removes a level);
* ``{"type": "top", ..., "bid", "ask"}`` for ``kind = "top"``;
* ``{"type": "stats", ..., "version", "update_id", <figures>}`` for ``kind = "stats"``
  (optional ``"levels"`` and ``"bps"`` as for ``/books/…/stats``), when a figure changed;
* ``{"type": "status", ..., "state"}`` whenever the book's state changes.

A slow client never slows the feeds or other clients: each subscription
waits for the book to change and then sends the difference between what the
client last got and the book now (latest state wins), so falling behind costs
only detail, never correctness. A client whose socket stays blocked for
``send_timeout`` seconds (``service.send_timeout``, default
:data:`SEND_TIMEOUT`) is disconnected.
"""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from typing import Any, Final

import orjson
import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import UnknownBook
from ..model import BookState, Level
from ..store import BookStore
from .figures import StatsCache, StatsQuery, comparable, stats_query
from .metrics import ClientCounts

MAX_CLIENTS: Final = 256
MAX_PER_ADDRESS = 32
"""Stream clients from one address at once: one host cannot take every slot."""
IDLE_TIMEOUT = 30.0
"""A client with no subscription for this long is closed (idle sockets hold slots)."""
MAX_SUBSCRIPTIONS: Final = 64
MAX_INBOUND: Final = 4096
MAX_DEPTH_PARAM: Final = 5000
"""The most levels per side a reader may ask for, over HTTP and ``/ws`` alike."""
SEND_TIMEOUT: Final = 10.0


def diff_levels(old: dict[Decimal, tuple[str, str]], new: list[Level]) -> list[list[str]]:
    """Levels to send so ``old`` (keyed by the price's exact value) becomes ``new``."""
    out: list[list[str]] = []
    seen = set()
    for price, qty in new:
        key = _norm(price)
        seen.add(key)
        prev = old.get(key)
        if prev is None or prev[1] != qty:
            out.append([price, qty])
    for key, (price, _) in old.items():
        if key not in seen:
            out.append([price, "0"])
    return out


def _norm(price: str) -> Decimal:
    """The exact value (``"0.10"`` and ``"0.1"`` are one key). Not ``normalize()``:
    it rounds to 28 digits, and two long prices would become one level."""
    return Decimal(price)


class StreamHub:
    def __init__(self, store: BookStore, clients: ClientCounts, send_timeout: float = SEND_TIMEOUT) -> None:
        self.store = store
        self.send_timeout = send_timeout
        self.clients = clients
        self.per_address: Counter[str] = Counter()
        self.stats = StatsCache(store)

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        if self.clients.stream_clients >= MAX_CLIENTS:
            await ws.close(code=1013, reason="too many stream clients, try again later")
            return
        address = ws.client.host if ws.client is not None else "?"
        if self.per_address[address] >= MAX_PER_ADDRESS:
            await ws.close(code=1013, reason=f"too many stream clients from {address} (at most {MAX_PER_ADDRESS})")
            return
        self.per_address[address] += 1
        try:
            await self._serve(ws)
        finally:
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]

    async def _serve(self, ws: WebSocket) -> None:
        self.clients.stream_clients += 1
        self.clients.stream_clients_total += 1
        send_lock = trio.Lock()

        async def send(msg: dict[str, Any]) -> None:
            async with send_lock:
                with trio.fail_after(self.send_timeout):
                    await ws.send_text(orjson.dumps(msg).decode())

        subs: dict[tuple[str, str], trio.CancelScope] = {}
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    text = None
                    with trio.move_on_after(IDLE_TIMEOUT if not subs else math.inf) as idle:
                        try:
                            text = await ws.receive_text()
                        except WebSocketDisconnect:
                            break
                        except (KeyError, RuntimeError):
                            pass
                    if idle.cancelled_caught:
                        await ws.close(code=1008, reason=f"idle: no subscription within {IDLE_TIMEOUT:g} s")
                        break
                    if type(text) is not str:  # a binary frame (the ASGI message then has text None)
                        await send({"type": "error", "error": "expected text frames"})
                        continue
                    if len(text) > MAX_INBOUND:
                        await send({"type": "error", "error": f"message too large (max {MAX_INBOUND} bytes)"})
                        continue
                    error = await self._command(text, subs, nursery, send)
                    if error:
                        await send({"type": "error", "error": error})
                nursery.cancel_scope.cancel()
        # except*: these arrive wrapped in an ExceptionGroup when a subscription task raised them
        except* trio.TooSlowError:
            pass  # a client that cannot keep up for SEND_TIMEOUT is dropped
        except* (WebSocketDisconnect, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.clients.stream_clients -= 1

    async def _command(self, text: str, subs: dict, nursery: trio.Nursery, send) -> str | None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "not valid JSON"
        if type(msg) is not dict:
            return "expected a JSON object"
        op = msg.get("op")
        venue, symbol = msg.get("venue"), msg.get("symbol")
        if op not in ("subscribe", "unsubscribe"):
            return 'op must be "subscribe" or "unsubscribe"'
        if type(venue) is not str or type(symbol) is not str:
            return "venue and symbol must be strings"
        key = (venue, symbol)
        if op == "unsubscribe":
            scope = subs.pop(key, None)
            if scope is None:
                return f"not subscribed to {venue}/{symbol}"
            scope.cancel()
            return None
        depth = msg.get("depth", 20)
        kind = msg.get("kind", "book")
        if type(depth) is not int or not 1 <= depth <= MAX_DEPTH_PARAM:
            return f"depth must be an integer from 1 to {MAX_DEPTH_PARAM}"
        if kind not in ("book", "top", "stats"):
            return 'kind must be "book", "top" or "stats"'
        query = stats_query(msg.get("levels"), msg.get("bps")) if kind == "stats" else None
        if isinstance(query, str):
            return query
        try:
            self.store.entry(venue, symbol)
        except UnknownBook as exc:
            return str(exc)
        if key in subs:
            return f"already subscribed to {venue}/{symbol}"
        if len(subs) >= MAX_SUBSCRIPTIONS:
            return f"at most {MAX_SUBSCRIPTIONS} subscriptions per client"
        scope = trio.CancelScope()
        subs[key] = scope
        nursery.start_soon(self._follow, scope, venue, symbol, depth, kind, send, query)
        return None

    async def _follow(self, scope: trio.CancelScope, venue: str, symbol: str, depth: int, kind: str, send,
                      query: StatsQuery | None = None) -> None:
        with scope:
            entry = self.store.entry(venue, symbol)
            seq = 0
            sent_state: BookState | None = None
            bids: dict[Decimal, tuple[str, str]] = {}
            asks: dict[Decimal, tuple[str, str]] = {}
            need_snapshot = True
            last_top: tuple[Any, Any] | None = None
            last_figures: dict[str, Any] | None = None
            version = -1
            while True:
                if entry.seq == version:
                    await entry.changed_event().wait()
                version = entry.seq
                base = {"venue": venue, "symbol": symbol}
                if entry.state is not sent_state:
                    sent_state = entry.state
                    seq += 1
                    await send({"type": "status", **base, "seq": seq, "version": version, "state": entry.state.value})
                    if entry.state is not BookState.LIVE:
                        need_snapshot = True
                        last_figures = None  # after an outage, the figures again
                        continue
                if entry.state is not BookState.LIVE or entry.book is None:
                    continue
                if query is not None:  # kind "stats": sent when a figure changed
                    figures = self.stats.figures(venue, symbol, query)
                    if figures is not None and comparable(figures) != last_figures:
                        last_figures = comparable(figures)
                        seq += 1
                        await send({"type": "stats", **base, "seq": seq, **figures})
                    continue
                view = self.store.view(venue, symbol, depth)
                if kind == "top":
                    top = (list(view.bids[0]) if view.bids else None, list(view.asks[0]) if view.asks else None)
                    if top != last_top:
                        last_top = top
                        seq += 1
                        await send({"type": "top", **base, "seq": seq, "version": view.seq, "bid": top[0], "ask": top[1],
                                    "exchange_ts": view.exchange_ts})
                    continue
                if need_snapshot:
                    d_bids = d_asks = None
                else:
                    d_bids = diff_levels(bids, list(view.bids))
                    d_asks = diff_levels(asks, list(view.asks))
                bids = {_norm(p): (p, q) for p, q in view.bids}
                asks = {_norm(p): (p, q) for p, q in view.asks}
                seq += 1
                if d_bids is None or d_asks is None or len(d_bids) + len(d_asks) > len(view.bids) + len(view.asks):
                    need_snapshot = False
                    snapshot_msg = {"type": "snapshot", **base, "seq": seq, "version": view.seq, "state": view.state.value,
                                   "bids": [list(x) for x in view.bids], "asks": [list(x) for x in view.asks],
                                   "exchange_ts": view.exchange_ts,
                                   "complete_depth": {"bids": view.complete_depth[0], "asks": view.complete_depth[1]}}
                    await send(snapshot_msg)
                elif d_bids or d_asks:
                    await send({"type": "update", **base, "seq": seq, "version": view.seq, "bids": d_bids, "asks": d_asks,
                                "exchange_ts": view.exchange_ts})
                else:
                    seq -= 1  # nothing visible changed within the subscribed depth
