"""Fake Coinbase Advanced Trade: ``level2`` and ``heartbeats`` on one WebSocket.

What it does as Coinbase does (Advanced Trade WebSocket docs, and the frames
of the August 2026 capture in ``tests/data/coinbase``):

* one ``sequence_num`` counter per connection, starting at 0, shared by every
  frame of every channel (``l2_data``, ``subscriptions``, ``heartbeats``);
* envelopes ``{"channel","timestamp","sequence_num","events"}`` with RFC 3339
  nanosecond timestamps (trailing zeros trimmed, as Go writes them);
* a ``level2`` subscribe gets, per product, a full-book ``snapshot`` event
  (``bid``/``offer`` rows), and then the cumulative ``subscriptions`` ack; the
  product's ``update`` events follow. Unknown product ids are silently left out
  of the ack and get no data (no error). A ``level2`` unsubscribe of some
  products stops their updates and is acked with the smaller set; subscribing
  one again sends it a fresh snapshot (a per-book resync). Every request is
  noted with its time in :attr:`FakeCoinbase.request_log`;
* a ``heartbeats`` subscribe gets its ack and then one ``heartbeats`` frame a
  second (``heartbeat_counter`` an integer, ``current_time`` in Go's format);
* an unknown channel is answered ``{"type":"error","message":"authentication
  failure"}``; a connection that subscribes nothing within 5 s is closed.

Fault controls (see :class:`FakeVenue`): :meth:`drop`, :meth:`silence` (open,
nothing sent, heartbeats included), :meth:`skip_next_update` (the update
consumes a ``sequence_num`` on every connection but is never sent: a gap),
:meth:`send_malformed`, ``reject_subscribe`` (an error frame instead of data),
plus :meth:`omit_from_subscriptions` (a product silently left out, as for an
unknown id), :meth:`cross_next` (one update of one product crosses its book),
:meth:`mute_heartbeats` (book data keeps flowing, heartbeats stop)
and :meth:`load_snapshot_frame` (serve a captured multi-MB ``l2_data`` snapshot
frame byte for byte, only ``sequence_num`` restamped).
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any, ClassVar

import orjson
import trio
from trio_websocket import ConnectionClosed

from ..book import OrderBook
from ..model import Level
from ._base import FakeClient, FakeVenue

KNOWN_CHANNELS = frozenset({"level2", "heartbeats", "ticker", "ticker_batch", "market_trades", "candles", "status"})
_SEQ = re.compile(rb'"sequence_num":\d+')
SAMPLE_EPOCH_NS = 1_786_309_548_483_587_501  # 2026-08-09T21:05:48.483587501Z, the capture's BTC-USD snapshot


def rfc3339(ns: int, digits: int = 9) -> str:
    """Unix nanoseconds as Coinbase writes them: ``2026-08-09T21:05:48.50535047Z``."""
    seconds, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}"[:digits].rstrip("0")
    return text + ("." + fraction if fraction else "") + "Z"


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


class FakeCoinbase(FakeVenue):
    """Coinbase Advanced Trade on ``ws://127.0.0.1:<port>``. Symbols are product ids (``BTC-USD``)."""

    venue_id: ClassVar[str] = "coinbase_spot"
    has_rest: ClassVar[bool] = False
    price_decimals: ClassVar[int] = 2
    qty_decimals: ClassVar[int] = 8
    heartbeat_interval: ClassVar[float] = 1.0
    subscribe_deadline: ClassVar[float] = 5.0

    def __init__(self, symbols, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.reject_message = "authentication failure"
        self._omit: set[str] = set()
        self._cross: set[str] = set()
        self._replay: dict[str, bytes] = {}
        self._sample_seq = 0
        self._counter_base = 41_691
        # counters, for tests
        self.subscribe_requests: list[dict] = []
        self.request_log: list[tuple[float, dict]] = []  # (trio time, request) of every subscribe/unsubscribe
        self.crossed_sent = 0
        self.heartbeats_sent = 0
        self.snapshots_sent = 0
        self.replays_sent = 0

    # --- Coinbase writes decimals without trailing zeros ("65062.5", "0") ------------------
    def fmt_price(self, ticks: int) -> str:
        return _trim(super().fmt_price(ticks))

    def fmt_qty(self, units: int) -> str:
        return _trim(super().fmt_qty(units))

    # --- fault controls -------------------------------------------------------------------
    def omit_from_subscriptions(self, *products: str) -> None:
        """Leave ``products`` out of every later ``level2`` subscription (no ack
        entry, no data, no error), as Coinbase does with an unknown product id."""
        self._omit.update(products)

    def restore_products(self) -> None:
        self._omit.clear()

    def cross_next(self, symbol: str) -> None:
        """The next update of ``symbol`` also carries a bid one tick above the
        true best ask: a crossed book on every connection (the truth stays
        right, so a fresh snapshot of that product cures it)."""
        self._cross.add(symbol)

    def mute_heartbeats(self) -> None:
        """Open connections stop getting heartbeats; book data keeps flowing."""
        for client in self.clients:
            client.state["heartbeats_muted"] = True

    async def send_unexpected(self) -> None:
        """A well-formed frame of a channel nobody subscribed, with each connection's
        next ``sequence_num`` (a venue that adds channels must not break the feed)."""
        for client in list(self.clients):
            lock = client.state.get("lock")
            if lock is None:
                continue  # still being set up
            async with lock:
                await client.send(self._frame(client, "fake-unexpected", [{"type": "update", "data": [1, 2, 3]}]))

    def load_snapshot_frame(self, raw: str | bytes) -> str:
        """Make a captured ``l2_data`` snapshot frame the truth of its product and
        serve it byte for byte (``sequence_num`` restamped) to the next
        subscribers, until the product's book changes. Returns the product id."""
        data = raw.encode() if isinstance(raw, str) else raw
        msg = orjson.loads(data)
        (event,) = msg["events"]
        if msg.get("channel") != "l2_data" or event.get("type") != "snapshot":
            raise ValueError("not an l2_data snapshot frame")
        product = event["product_id"]
        if product not in self.truth:
            raise ValueError(f"{product} is not one of this fake's products")
        bids = [(r["price_level"], r["new_quantity"]) for r in event["updates"] if r["side"] == "bid"]
        asks = [(r["price_level"], r["new_quantity"]) for r in event["updates"] if r["side"] == "offer"]
        book = self.truth[product] = OrderBook(None)
        book.apply(bids, asks)
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid is not None and best_ask is not None
        scale = 10**self.price_decimals
        self._mid[product] = int((Decimal(best_bid[0]) + Decimal(best_ask[0])) * scale) // 2
        self._replay[product] = data
        return product

    def next_change(self, symbol: str) -> tuple[list[Level], list[Level]]:
        self._replay.pop(symbol, None)  # the captured frame no longer is the truth
        return super().next_change(symbol)

    # --- frames -----------------------------------------------------------------------------
    def _frame(self, client: FakeClient, channel: str, events: list[dict[str, Any]]) -> str:
        """The next envelope of ``client``'s connection (call under its lock)."""
        seq = client.state["seq"]
        client.state["seq"] = seq + 1
        return orjson.dumps({"channel": channel, "timestamp": rfc3339(time.time_ns()), "sequence_num": seq,
                             "events": events}).decode()

    @staticmethod
    def _rows(bids: list[Level], asks: list[Level], event_time: str) -> list[dict[str, str]]:
        rows = [{"side": "bid", "event_time": event_time, "price_level": p, "new_quantity": q} for p, q in bids]
        rows += [{"side": "offer", "event_time": event_time, "price_level": p, "new_quantity": q} for p, q in asks]
        return rows

    def _snapshot_frame(self, client: FakeClient, product: str) -> str | bytes:
        replay = self._replay.get(product)
        if replay is not None:
            seq = client.state["seq"]
            client.state["seq"] = seq + 1
            head = replay.find(b'"events"')
            self.replays_sent += 1
            return _SEQ.sub(b'"sequence_num":%d' % seq, replay[:head], count=1).decode() + replay[head:].decode()
        book = self.truth[product]
        rows = self._rows(book.top_bids(), book.top_asks(), rfc3339(time.time_ns(), 6))
        return self._frame(client, "l2_data", [{"type": "snapshot", "product_id": product, "updates": rows}])

    def _subscriptions_frame(self, client: FakeClient) -> str:
        subs = client.state["subs"]
        return self._frame(client, "subscriptions", [{"subscriptions": {k: list(subs[k]) for k in sorted(subs)}}])

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        """One update frame as a connection would get it, for tests that need sample
        frames (the stream numbers each connection's frames itself: see :meth:`emit`).
        Its times come from a fixed clock, so the same seed gives the same bytes."""
        seq, self._sample_seq = self._sample_seq, self._sample_seq + 1
        ns = SAMPLE_EPOCH_NS + seq * 50_123_457
        rows = self._rows(bids, asks, rfc3339(ns - 1_234_567, 6))
        return [orjson.dumps({"channel": "l2_data", "timestamp": rfc3339(ns), "sequence_num": seq,
                              "events": [{"type": "update", "product_id": symbol, "updates": rows}]}).decode()]

    # --- the stream ----------------------------------------------------------------------------
    async def emit(self, symbol: str) -> None:
        bids, asks = self.next_change(symbol)
        skip = symbol in self._skip
        if skip:
            self._skip.discard(symbol)
        else:
            self.events_sent += 1
            if symbol in self._cross:
                self._cross.discard(symbol)
                self.crossed_sent += 1
                best_ask = self.truth[symbol].best_ask()
                assert best_ask is not None
                tick = Decimal(1).scaleb(-self.price_decimals)
                bids = [*bids, (_trim(str(Decimal(best_ask[0]) + tick)), self.fmt_qty(1))]
        event_time = rfc3339(time.time_ns(), 6)
        for client in list(self.clients):
            if symbol not in client.symbols:
                continue
            async with client.state["lock"]:
                if symbol not in client.symbols:
                    continue
                if skip:
                    client.state["seq"] += 1  # lost on the way: the next frame shows the gap
                    continue
                events = [{"type": "update", "product_id": symbol, "updates": self._rows(bids, asks, event_time)}]
                await client.send(self._frame(client, "l2_data", events))

    # --- one connection ------------------------------------------------------------------
    async def handle(self, client: FakeClient) -> None:
        if client.path not in ("/", ""):
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        client.state.update(seq=0, lock=trio.Lock(), subs={}, heartbeats=False, heartbeats_muted=False,
                            subscribed=trio.Event())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats, client)
            nursery.start_soon(self._subscribe_deadline, client)
            try:
                await self._requests(client)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()

    async def _subscribe_deadline(self, client: FakeClient) -> None:
        with trio.move_on_after(self.subscribe_deadline):
            await client.state["subscribed"].wait()
            return
        client.closed = True
        with trio.move_on_after(1):
            await client.ws.aclose(code=1000, reason="no subscribe within 5 s")

    async def _heartbeats(self, client: FakeClient) -> None:
        started = trio.current_time()
        while True:
            await trio.sleep(self.heartbeat_interval)
            if not client.state["heartbeats"] or client.state["heartbeats_muted"]:
                continue
            uptime = trio.current_time() - started + self._counter_base
            ns = time.time_ns()
            wall = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 10**9))
            event = {"current_time": f"{wall}.{ns % 10**9:09d} +0000 UTC m=+{uptime:.9f}",
                     "heartbeat_counter": int(uptime)}
            async with client.state["lock"]:
                if not client.silent:
                    self.heartbeats_sent += 1
                await client.send(self._frame(client, "heartbeats", [event]))

    async def _error(self, client: FakeClient, message: str) -> None:
        await client.send(orjson.dumps({"type": "error", "message": message}).decode())

    async def _requests(self, client: FakeClient) -> None:
        while True:
            if client.silent:
                await trio.sleep_forever()
            raw = await client.receive()
            if client.silent:
                continue
            try:
                msg = orjson.loads(raw)
                kind, channel = msg["type"], msg["channel"]
                products = msg.get("product_ids", [])
                if type(products) is not list:
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                await self._error(client, "failure to parse message")
                continue
            if kind not in ("subscribe", "unsubscribe"):
                await self._error(client, f"unknown message type {str(kind)[:40]}")
                continue
            if kind == "subscribe":
                self.subscribe_requests.append(msg)
            self.request_log.append((trio.current_time(), msg))
            if self.reject_subscribe or channel not in KNOWN_CHANNELS:
                await self._error(client, self.reject_message)
                continue
            client.state["subscribed"].set()
            if kind == "unsubscribe":
                await self._unsubscribe(client, channel, products)
            elif channel == "level2":
                await self._subscribe_level2(client, products)
            else:
                async with client.state["lock"]:
                    subs = client.state["subs"]
                    if channel == "heartbeats":
                        subs["heartbeats"] = ["heartbeats"]
                        client.state["heartbeats"] = True
                    else:  # acknowledged; this fake carries no data for it
                        listed = subs.setdefault(channel, [])
                        listed.extend(p for p in products if p in self.truth and p not in listed)
                    await client.send(self._subscriptions_frame(client))

    async def _subscribe_level2(self, client: FakeClient, products: list) -> None:
        lock = client.state["lock"]
        for product in products:
            if product not in self.truth or product in self._omit:
                continue  # silently left out, as Coinbase does with unknown ids
            async with lock:
                listed = client.state["subs"].setdefault("level2", [])
                if product not in listed:
                    listed.append(product)
                # snapshot and membership in one step: no update can slip in between
                frame = self._snapshot_frame(client, product)
                client.symbols.add(product)
                self.snapshots_sent += 1
                await client.send(frame)
            await trio.sleep(0)
        async with lock:
            client.state["subs"].setdefault("level2", [])
            await client.send(self._subscriptions_frame(client))

    async def _unsubscribe(self, client: FakeClient, channel: str, products: list) -> None:
        async with client.state["lock"]:
            subs = client.state["subs"]
            if channel == "heartbeats" or not products:
                subs.pop(channel, None)
                if channel == "heartbeats":
                    client.state["heartbeats"] = False
                if channel == "level2":
                    client.symbols.clear()
            else:
                listed = subs.get(channel, [])
                for p in products:
                    if p in listed:
                        listed.remove(p)
                    if channel == "level2":
                        client.symbols.discard(p)
                if not listed:
                    subs.pop(channel, None)
            await client.send(self._subscriptions_frame(client))


__all__ = ["FakeCoinbase", "rfc3339"]
