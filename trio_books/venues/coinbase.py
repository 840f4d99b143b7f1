"""Coinbase Advanced Trade: the public ``level2`` channel plus ``heartbeats``.

Protocol (Coinbase "Advanced Trade WebSocket" overview and channels pages; see
``shared/protocols/coinbase-advanced-trade.md`` and the capture in
``tests/data/coinbase``):

* Connect to ``wss://advanced-trade-ws.coinbase.com`` (no authentication for
  these channels) and, within 5 s, subscribe **one channel per message**:
  ``{"type":"subscribe","product_ids":[...],"channel":"level2"}`` then
  ``{"type":"subscribe","channel":"heartbeats"}``.
* Every frame is an envelope ``{"channel", "timestamp", "sequence_num",
  "events"}``. The book arrives on channel ``l2_data``: events of ``type``
  ``snapshot`` (the **full** book, one frame per product, 5 MB for BTC-USD) or
  ``update``, with ``updates[]`` rows ``{side: "bid"|"offer", event_time,
  price_level, new_quantity}``; ``new_quantity`` is the new absolute size and
  ``"0"`` removes the level. Every number is a string.
* ``sequence_num`` is **one counter per connection, across every channel**
  (subscriptions acks, heartbeats, l2_data): each frame must carry the previous
  one's number plus one, otherwise frames were lost — of any product, so the
  attempt ends with :class:`~trio_books.errors.ConnectionGap`. That check spans
  channels, so it lives here, in the per-connection parser, not in a
  per-product sequencer.
* ``subscriptions`` frames acknowledge each (un)subscribe request, in order,
  and are cumulative (each lists the whole subscription set). An unknown
  product id is not refused: it is silently left out. So each ack is matched
  with the oldest request not acked yet; a product a ``level2`` subscribe asked
  for and its ack leaves out is refused alone
  (:class:`~trio_books.errors.SymbolRejected`), the others go on. The ack of an
  ``unsubscribe`` lists fewer products, as it should.
* One book is rebuilt on the live connection (a crossed book, an update before
  its snapshot): unsubscribe its ``level2``, subscribe it again, and a fresh
  full snapshot follows. Until the unsubscribe is acked its updates may still
  be in flight (the core drops them: the book is not live); after that ack an
  update before the new snapshot is a fault of that book
  (:class:`~trio_books.errors.SequenceGap`). Subscribe and unsubscribe frames
  are paced at 8 a second (the unauthenticated message limit).
* ``{"type":"error","message":...}`` (no envelope) refuses a request.
* ``heartbeats`` arrive once a second; without traffic Coinbase closes channels
  after 60–90 s, so we always subscribe them, and a connection without one for
  60 s is a zombie (the watchdog counts heartbeats only).

Pure: no Trio, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Final

import attrs
import orjson

from ..book import OrderBook
from ..errors import BadFrame, ConnectionGap, SequenceGap, SymbolRejected, VenueRejected
from ..model import BEAT, UNKNOWN, UNREQUESTED, Delta, Level, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, Parsed, Subscription, Venue

WS_URL: Final = "wss://advanced-trade-ws.coinbase.com"
LEVEL2: Final = "level2"
HEARTBEATS: Final = "heartbeats"

MAX_MESSAGE_SIZE: Final = 16 * 2**20
"""16 MiB. The one large frame is a product's full-depth ``l2_data`` snapshot:
5,079,379 bytes for BTC-USD (46,000 levels) in the August 2026 capture, 2.5 MB
for ETH-USD. 16 MiB leaves three times the largest seen (a busier book must not
kill every connection with 1009) while still bounding what one frame may cost;
Coinbase's own SDK uses 10 MiB, which leaves only 2x."""

FULL_DEPTH: Final = 1_000_000
"""Levels kept per side. ``level2`` is a full-depth feed: a level dropped by
truncation never comes back, so a truncated book goes wrong at its tail after
deletions nearer the top. Keep everything unless told otherwise (the largest
book seen had 46,000 levels in all)."""

MAX_PRODUCTS_PER_CONNECTION: Final = 100
"""Coinbase documents no per-connection product limit (UNCONFIRMED). 100 keeps
one connection's burst of full-depth snapshots (5 MB each for the largest
books) and one reader's load bounded; more products open more connections."""


def subscribe_frame(channel: str, product_ids: Sequence[str] | None = None, kind: str = "subscribe") -> str:
    """One subscribe (or unsubscribe) request (Coinbase allows one channel per message)."""
    msg: dict[str, Any] = {"type": kind}
    if product_ids is not None:
        msg["product_ids"] = list(product_ids)
    msg["channel"] = channel
    return orjson.dumps(msg).decode()


_DAY_CACHE: dict[str, float] = {}


def iso_seconds(text: object) -> float | None:
    """``"2026-08-09T21:05:48.505350477Z"`` (RFC 3339, UTC, 0–9 fraction digits)
    → Unix seconds. ``None`` for anything else and for the epoch-zero
    ``event_time`` the docs show on snapshot rows. A float is fine here: it is
    only a timestamp, never a price."""
    if type(text) is not str or len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        return None
    day = text[:10]
    base = _DAY_CACHE.get(day)
    try:
        if base is None:
            base = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
            if len(_DAY_CACHE) > 64:
                _DAY_CACHE.clear()
            _DAY_CACHE[day] = base
        hh, mm, ss = text[11:13], text[14:16], text[17:19]
        if text[13] != ":" or text[16] != ":" or not (hh + mm + ss).isdigit():
            return None
        seconds = base + int(hh) * 3600 + int(mm) * 60 + int(ss)
        frac = text[19:-1]
        if frac:
            if frac[0] != "." or not frac[1:].isdigit():
                return None
            seconds += int(frac[1:]) / 10 ** (len(frac) - 1)
    except ValueError:
        return None
    return seconds or None


@attrs.define
class ProductChain:
    """Per-product sequencer. The strict check (every frame is the previous
    ``sequence_num`` + 1) is connection-wide and done by :class:`CoinbaseFeed`;
    here a product's events only have to move forward (several events of one
    frame share its number)."""

    last: int = -1

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        self.last = snap.update_id if snap.update_id is not None else -1
        return True

    def check(self, delta: Delta) -> Verdict:
        seq = delta.final_id
        if seq is None:
            raise BadFrame("update without sequence_num")
        if seq < self.last:
            return Verdict.GAP
        self.last = seq
        return Verdict.APPLY


class CoinbaseFeed:
    """One Advanced Trade connection carrying ``level2`` for some products."""

    rest_snapshots = False

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self.symbols = spec.symbols
        self.url = spec.ws_base
        self._by_wire = {s.upper(): s for s in spec.symbols}
        self.product_ids = list(self._by_wire)
        self.last_seq: int | None = None
        self._snapshotted: set[str] = set()  # products whose updates may come (a snapshot came, no unsubscribe acked since)
        self._unacked: deque[tuple[str, str, tuple[str, ...]]] = deque()  # (type, channel, product ids) per request, in order
        self.level2_confirmed = False

    # --- outbound ---------------------------------------------------------------------
    def _request(self, channel: str, product_ids: Sequence[str] | None = None, kind: str = "subscribe") -> str:
        """A request frame, remembered until its ``subscriptions`` ack (the frames
        go out in the order they are made, and Coinbase acks each in order)."""
        self._unacked.append((kind, channel, tuple(product_ids or ())))
        return subscribe_frame(channel, product_ids, kind)

    def subscribe(self) -> list[Subscription]:
        """``level2`` for every product, then ``heartbeats`` (one channel per message)."""
        return [Subscription(self._request(LEVEL2, self.product_ids), tuple(self.symbols)),
                Subscription(self._request(HEARTBEATS), ())]

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription]:
        """Rebuild one product's book: unsubscribe its ``level2``, subscribe again (a new snapshot follows)."""
        kinds = ("unsubscribe", "subscribe") if unsubscribe else ("subscribe",)
        return [Subscription(self._request(LEVEL2, [symbol.upper()], kind), (symbol,)) for kind in kinds]

    # --- inbound ----------------------------------------------------------------------
    def parse(self, raw: str | bytes) -> list[Parsed]:
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        if msg.get("type") == "error":
            raise VenueRejected(f"venue error: {str(msg.get('message'))[:200]}")
        seq = msg.get("sequence_num")
        if type(seq) is not int:
            raise BadFrame("frame without an integer sequence_num")
        last = self.last_seq
        if last is not None and seq != last + 1:
            raise ConnectionGap(f"sequence_num {seq} after {last}: the connection-wide counter skipped or went back")
        self.last_seq = seq
        channel = msg.get("channel")
        events = msg.get("events")
        if type(events) is not list:
            raise BadFrame(f"{str(channel)[:40]} frame without an events array")
        if channel == "l2_data":
            return self._book(events, seq, msg.get("timestamp"))
        if channel == HEARTBEATS:
            return [BEAT]
        if channel == "subscriptions":
            return self._acked(events)
        return [UNKNOWN]  # other channels (ticker, status ...): not ours; its sequence_num was checked above

    def _book(self, events: list, seq: int, timestamp: object) -> list[Parsed]:
        out: list[Parsed] = []
        sent_at: float | None = None
        for event in events:
            if type(event) is not dict:
                raise BadFrame("l2_data event is not an object")
            symbol = self._by_wire.get(event.get("product_id"))  # type: ignore[arg-type]
            if symbol is None:  # a product this connection did not ask for
                out.append(UNREQUESTED)
                continue
            kind = event.get("type")
            rows = event.get("updates")
            if type(rows) is not list:
                raise BadFrame(f"{symbol}: updates is not an array")
            bids, asks, last_time = _rows(rows)
            if kind == "snapshot":
                self._snapshotted.add(symbol)
                if sent_at is None:
                    sent_at = iso_seconds(timestamp)
                out.append(Snapshot(symbol, bids, asks, seq, sent_at))
            elif kind == "update":
                if symbol not in self._snapshotted:
                    raise SequenceGap(symbol, "update before its snapshot")
                ts = iso_seconds(last_time)
                if ts is None:
                    if sent_at is None:
                        sent_at = iso_seconds(timestamp)
                    ts = sent_at
                out.append(Delta(symbol, bids, asks, seq, seq, None, ts))
            else:
                raise BadFrame(f"{symbol}: unknown l2_data event type {str(kind)[:40]!r}")
        return out

    def _acked(self, events: list) -> list[Parsed]:
        """A ``subscriptions`` frame answers our oldest request not acked yet.
        Its ``level2`` list must hold every product that request subscribed: one
        left out is unknown to Coinbase and refused alone. The ack of an
        unsubscribe ends that product's stream (its updates stop before it)."""
        current: dict[str, Any] = {}
        for event in events:
            subs = event.get("subscriptions") if type(event) is dict else None
            if type(subs) is not dict:
                raise BadFrame("subscriptions event without a subscriptions object")
            current.update(subs)
        listed = current.get(LEVEL2) or []
        if type(listed) is not list:
            raise BadFrame("level2 subscription list is not an array")
        if (current and LEVEL2 not in current and HEARTBEATS not in current) or not self._unacked:
            return []  # an ack of channels we never ask for: not an answer to ours
        kind, channel, products = self._unacked.popleft()
        if channel != LEVEL2:
            return []
        if kind == "unsubscribe":
            self._snapshotted.difference_update(self._by_wire[p] for p in products)
            return []
        self.level2_confirmed = True
        return [SymbolRejected(self._by_wire[p], "left out of the level2 subscriptions ack "
                               "(Coinbase silently drops unknown product ids: check the symbol)")
                for p in products if p not in listed]

    # --- sequencing, REST, checksum ------------------------------------------------------
    def new_sequencer(self, symbol: str) -> ProductChain:
        return ProductChain()

    def snapshot_url(self, symbol: str) -> str:
        raise TypeError("Coinbase pushes its snapshots on the socket")  # never called: rest_snapshots is False

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        raise TypeError("Coinbase pushes its snapshots on the socket")  # never called: rest_snapshots is False

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        return True  # no checksum on level2; the sequence_num chain is the check


def _rows(rows: list) -> tuple[list[Level], list[Level], object]:
    """Split ``updates`` rows into bid and ask levels, keeping Coinbase's text.
    Returns the last row's ``event_time`` too."""
    bids: list[Level] = []
    asks: list[Level] = []
    add_bid, add_ask = bids.append, asks.append
    event_time: object = None
    for row in rows:
        if type(row) is not dict:
            raise BadFrame("l2_data row is not an object")
        price, qty = row.get("price_level"), row.get("new_quantity")
        if type(price) is not str or type(qty) is not str:
            raise BadFrame(f"price_level/new_quantity are not strings: {str(row)[:80]}")
        side = row.get("side")
        if side == "bid":
            add_bid((price, qty))
        elif side == "offer":
            add_ask((price, qty))
        else:
            raise BadFrame(f"unknown side {str(side)[:20]!r}")
        event_time = row.get("event_time")
    return bids, asks, event_time


COINBASE_SPOT: Final = Venue(
    id="coinbase_spot",
    ws_url=WS_URL,
    rest_url=None,
    connect=CoinbaseFeed,
    # Heartbeats come once a second; only they count (watchdog_on="beat"), so a
    # connection that still streams book data but lost its heartbeats, or one
    # that went quiet entirely (a zombie), ends after 60 s.
    heartbeat=Heartbeat(watchdog=60.0, watchdog_on="beat"),
    max_symbols_per_connection=MAX_PRODUCTS_PER_CONNECTION,
    max_depth=FULL_DEPTH,
    default_depth=FULL_DEPTH,
    max_message_size=MAX_MESSAGE_SIZE,
    # 8 new connections and 8 unauthenticated messages per second per IP; each
    # connection sends 2 subscribe messages, so at most 4 connections a second
    # and one message per 1/8 s within a connection keep both limits.
    connect_budget=(4, 1.0),
    subscribe_spacing=0.125,
    shared_ids=False,  # sequence_num counts per connection
    symbol_form=(r"[A-Za-z0-9]+-[A-Za-z0-9]+", "BASE-QUOTE, e.g. BTC-USD"),
)

__all__ = ["COINBASE_SPOT", "CoinbaseFeed", "FULL_DEPTH", "MAX_MESSAGE_SIZE", "ProductChain", "iso_seconds", "subscribe_frame"]
