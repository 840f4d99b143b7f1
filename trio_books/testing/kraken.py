"""Fake Kraken Spot WebSocket v2: ``status``, ``instrument``, ``book`` with CRC32, heartbeats, ping/pong.

What it does as Kraken does (``docs.kraken.com`` spot WebSocket v2):

* serves ``/v2``; says ``status`` on connect (a ``connection_id`` above 2**53);
* ``instrument`` subscribe: an ack, then one snapshot of ``assets`` and ``pairs``
  with each pair's ``price_precision``/``qty_precision``;
* ``book`` subscribe: one ack per symbol (``success: false`` plus ``error`` and the
  ``symbol`` for an unknown pair or a bad depth), then a snapshot of the top
  ``depth`` levels per side. With :attr:`FakeVenue.reject_subscribe` set the whole
  request is refused once, naming no symbol, as a rate limit answers a request
  (``Exceeded msg rate``; Kraken's exact frame is unconfirmed); ``book`` unsubscribe: one
  ack per symbol, and nothing more of that book until it is subscribed again
  (a per-book resync: then a fresh snapshot); :attr:`FakeKraken.book_requests`
  notes every book request;
* updates carry only what changed inside each client's window: changed levels,
  ``qty`` 0 for deleted ones, and the level that enters the window after a
  deletion. Levels pushed out by better ones get no delete (the client truncates).
  Lists are in no particular order. Prices and quantities are bare JSON numbers;
  ``trim_zeros=True`` drops trailing zeros as the documentation's examples do
  (``0.566``), otherwise they carry the pair's decimals as the 2026 captures do;
* every snapshot and update carries the CRC32 of the top 10 asks then bids;
* ``{"channel":"heartbeat"}`` once a second while nothing else was sent;
  ``{"method":"ping"}`` is answered with ``pong`` (echoing ``req_id``).

Faults (see :class:`FakeVenue`): drop, silence (open, nothing sent, pings
unanswered), malformed frame, subscribe rejection, ``corrupt_checksum_next``, and
``skip_next_update`` — Kraken has no sequence ids, so a lost update shows only in
the checksum; the skipped update therefore always changes a top-10 level (one
that changed only levels below the top 10 would be invisible to the checksum).
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed

from ..model import Level
from ._base import HOST, FakeClient, FakeVenue

DEPTHS = (10, 25, 100, 500, 1000)
CONNECTION_ID = 13834774380200032777  # above 2**63, as in the documentation


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class FakeKraken(FakeVenue):
    """Kraken Spot v2 on ``ws://127.0.0.1:<port>/v2``. Symbols are ``BASE/QUOTE``."""

    venue_id: ClassVar[str] = "kraken_spot"
    has_rest: ClassVar[bool] = False
    price_decimals: ClassVar[int] = 1
    qty_decimals: ClassVar[int] = 8
    max_message_size: ClassVar[int] = 2**23
    heartbeat_interval: ClassVar[float] = 1.0

    def __init__(self, symbols, *, trim_zeros: bool = False, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.trim_zeros = trim_zeros
        self._reached_all: dict[str, bool] = {}  # symbol -> its last update reached every subscriber
        # counters, for tests
        self.pings_answered = 0
        self.book_subscribes = 0
        self.book_requests: list[tuple[float, str, tuple[str, ...]]] = []  # (trio time, method, symbols)
        self.rejections_sent = 0
        self.checksums_corrupted = 0
        self.updates_skipped = 0

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/v2"

    # --- wire formatting -------------------------------------------------------------
    def _num(self, text: str) -> str:
        """A decimal string as a bare JSON number."""
        if self.trim_zeros and "." in text:
            text = text.rstrip("0").rstrip(".") or "0"
        return text

    def _levels_json(self, levels: list[Level]) -> str:
        return "[" + ",".join(f'{{"price":{self._num(p)},"qty":{self._num(q)}}}' for p, q in levels) + "]"

    @staticmethod
    def checksum(bids: list[Level], asks: list[Level]) -> int:
        """CRC32 over the top 10 asks then bids, from the truth's fixed-decimal text."""
        text = "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0") for p, q in asks[:10] + bids[:10])
        return zlib.crc32(text.encode("ascii"))

    def _book_frame(self, kind: str, symbol: str, bids: list[Level], asks: list[Level], checksum: int) -> str:
        return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{_dumps(symbol)},'
                f'"bids":{self._levels_json(bids)},"asks":{self._levels_json(asks)},'
                f'"checksum":{checksum},"timestamp":"{_now()}"}}]}}')

    def instrument_snapshot(self) -> str:
        pd, qd = self.price_decimals, self.qty_decimals
        assets = sorted({part for s in self.symbols for part in s.split("/")} | {"USD"})
        pairs = []
        for symbol in [*self.symbols, "DOGE/EUR"]:
            base, _, quote = symbol.partition("/")
            pairs.append({
                "symbol": symbol, "base": base, "quote": quote, "status": "online",
                "qty_precision": qd, "qty_increment": 10.0**-qd, "price_precision": pd,
                "cost_precision": 5, "marginable": False, "has_index": True, "cost_min": 0.5,
                "tick_size": 10.0**-pd, "price_increment": 10.0**-pd, "qty_min": 0.0001,
            })
        data = {
            "assets": [{"id": a, "status": "enabled", "precision": 8, "precision_display": 5, "borrowable": False,
                        "collateral_value": 0.0, "margin_rate": 0.0} for a in assets],
            "pairs": pairs,
        }
        return _dumps({"channel": "instrument", "type": "snapshot", "data": data})

    # --- one connection ------------------------------------------------------------------
    async def _send(self, client: FakeClient, frame: str) -> None:
        client.state["last_sent"] = trio.current_time()
        await client.send(frame)

    async def handle(self, client: FakeClient) -> None:
        if urlsplit(client.path).path != "/v2":
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        client.state.update(books={}, lock=trio.Lock(), subscribed=False, last_sent=trio.current_time())
        await self._send(client, _dumps({"channel": "status", "type": "update", "data": [
            {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": CONNECTION_ID}]}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats, client)
            try:
                await self._requests(client)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client (or a drop) closed it
            finally:
                nursery.cancel_scope.cancel()

    async def _heartbeats(self, client: FakeClient) -> None:
        while True:
            await trio.sleep(self.heartbeat_interval)
            if client.state["subscribed"] and trio.current_time() - client.state["last_sent"] >= self.heartbeat_interval:
                await self._send(client, '{"channel":"heartbeat"}')

    async def _requests(self, client: FakeClient) -> None:
        while True:
            if client.silent:
                await trio.sleep_forever()
            raw = await client.receive()
            if client.silent:
                continue  # silenced while waiting: the request goes unanswered
            time_in = _now()
            try:
                msg = json.loads(raw)
            except ValueError:
                await self._send(client, _dumps({"error": "Malformed request", "success": False, "time_in": time_in, "time_out": _now()}))
                continue
            method = msg.get("method") if isinstance(msg, dict) else None
            req = {"req_id": msg["req_id"]} if isinstance(msg, dict) and "req_id" in msg else {}
            if method == "ping":
                self.pings_answered += 1
                await self._send(client, _dumps({"method": "pong", **req, "time_in": time_in, "time_out": _now()}))
            elif method in ("subscribe", "unsubscribe"):
                params = msg.get("params") or {}
                channel = params.get("channel")
                if channel == "instrument" and method == "subscribe":
                    client.state["subscribed"] = True
                    await self._send(client, _dumps({"method": "subscribe", "result": {"channel": "instrument", "snapshot": True},
                                                     "success": True, "time_in": time_in, "time_out": _now(), **req}))
                    await self._send(client, self.instrument_snapshot())
                elif channel == "book":
                    await self._book_request(client, method, params, req, time_in)
                else:
                    await self._send(client, _dumps({"error": "Channel not found", "method": method, "success": False,
                                                     "time_in": time_in, "time_out": _now(), **req}))
            else:
                await self._send(client, _dumps({"error": "Method not found", "method": method, "success": False,
                                                 "time_in": time_in, "time_out": _now(), **req}))

    async def _book_request(self, client: FakeClient, method: str, params: dict, req: dict, time_in: str) -> None:
        depth = params.get("depth", 10)
        symbols = params.get("symbol") or []
        if method == "subscribe":
            self.book_subscribes += 1
        self.book_requests.append((trio.current_time(), method, tuple(symbols)))
        if self.reject_subscribe:
            self.rejections_sent += 1
            await self._send(client, _dumps({"error": "Exceeded msg rate", "method": method, "success": False,
                                             "time_in": time_in, "time_out": _now(), **req}))
            return
        for symbol in symbols:
            error = None
            if symbol not in self.truth:
                error = f"Currency pair not supported {symbol}"
            elif depth not in DEPTHS:
                error = "Invalid depth"
            if error is not None:
                self.rejections_sent += 1
                await self._send(client, _dumps({"error": error, "method": method, "success": False, "symbol": symbol,
                                                 "time_in": time_in, "time_out": _now(), **req}))
                continue
            async with client.state["lock"]:
                if method == "unsubscribe":
                    client.state["books"].pop(symbol, None)
                    client.symbols.discard(symbol)
                    await self._send(client, _dumps({"method": "unsubscribe", "result": {"channel": "book", "depth": depth, "symbol": symbol},
                                                     "success": True, "time_in": time_in, "time_out": _now(), **req}))
                    continue
                client.state["subscribed"] = True
                bids, asks = self.top(symbol, depth)
                client.state["books"][symbol] = {"depth": depth, "bids": dict(bids), "asks": dict(asks)}
                client.symbols.add(symbol)
                await self._send(client, _dumps({"method": "subscribe", "result": {"channel": "book", "depth": depth, "snapshot": True, "symbol": symbol},
                                                 "success": True, "time_in": time_in, "time_out": _now(), **req}))
                await self._send(client, self._book_frame("snapshot", symbol, bids, asks, self.checksum(bids, asks)))

    # --- the stream ----------------------------------------------------------------------------
    def next_top_change(self, symbol: str) -> tuple[list[Level], list[Level]]:
        """Change the quantity at the best bid or ask (a change the checksum sees)."""
        book = self.truth[symbol]
        is_bid = self.rng.random() < 0.5
        price, qty = (book.best_bid() if is_bid else book.best_ask())  # type: ignore[misc]
        new = self.fmt_qty(self.rng.randint(1, 50_000))
        if new == qty:
            new = self.fmt_qty(50_001)
        change = [(price, new)]
        bids, asks = (change, []) if is_bid else ([], change)
        book.apply(bids, asks)
        return bids, asks

    def _window_diff(self, sub: dict, side: str, levels: list[Level], deleted: set[str]) -> list[Level]:
        old: dict[str, str] = sub[side]
        new = dict(levels)
        out = [(p, q) for p, q in new.items() if old.get(p) != q]  # changed, added, or entering the window
        out += [(p, self.zero_qty()) for p in old if p not in new and p in deleted]  # deleted inside it
        sub[side] = new
        self.rng.shuffle(out)
        return out

    async def emit(self, symbol: str) -> None:
        skip = symbol in self._skip
        if skip:
            self._skip.discard(symbol)
            self.updates_skipped += 1
            bids, asks = self.next_top_change(symbol)
        else:
            bids, asks = self.next_change(symbol)
            self.events_sent += 1
        zero = self.zero_qty()
        deleted = {p for p, q in bids + asks if q == zero}
        corrupt = not skip and symbol in self._corrupt
        self._reached_all[symbol] = True
        for client in list(self.clients):
            sub = client.state.get("books", {}).get(symbol)
            if sub is None:
                continue
            async with client.state["lock"]:
                if client.state["books"].get(symbol) is not sub:
                    continue  # unsubscribed meanwhile
                top_bids, top_asks = self.top(symbol, sub["depth"])
                send_bids = self._window_diff(sub, "bids", top_bids, deleted)
                send_asks = self._window_diff(sub, "asks", top_asks, deleted)
                if skip or not (send_bids or send_asks):
                    if not skip:  # nothing changed inside this client's window: it got no frame
                        self._reached_all[symbol] = False
                    continue  # lost on the way, or nothing changed inside this client's window
                checksum = self.checksum(top_bids, top_asks)
                if corrupt:
                    checksum ^= 0x00010000
                    self._corrupt.discard(symbol)
                    self.checksums_corrupted += 1
                    corrupt = False
                await self._send(client, self._book_frame("update", symbol, send_bids, send_asks, checksum))

    def note_emitted(self, symbol: str, *, skipped: bool) -> None:
        """A skipped update stays hidden until every subscriber got a frame of the
        symbol after it: an update outside a client's window sends that client
        nothing, so it cannot show the gap (see :meth:`FakeVenue.hidden_gaps`)."""
        if skipped or (symbol in self._hidden and not self._reached_all.get(symbol, True)):
            self._hidden.add(symbol)
        else:
            self._hidden.discard(symbol)

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        """One update as a client subscribed to the whole true book would get it
        (the stream itself encodes per client, each with its own window: see :meth:`emit`)."""
        top_bids, top_asks = self.top(symbol, 10)
        return [self._book_frame("update", symbol, bids, asks, self.checksum(top_bids, top_asks))]


__all__ = ["FakeKraken"]
