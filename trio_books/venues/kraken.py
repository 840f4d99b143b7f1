"""Kraken Spot, WebSocket v2: the ``book`` channel with socket snapshots and CRC32.

The protocol (``docs.kraken.com`` spot WebSocket v2 pages ``book``,
``instrument``, ``heartbeat``, ``ping``, ``status`` and the guide "book
checksum v2"; notes in ``shared/protocols/kraken-v2.md``):

1. One connection to ``wss://ws.kraken.com/v2``. The server says ``status``
   unasked. We subscribe the ``instrument`` channel first: its snapshot lists
   every pair with its ``price_precision`` and ``qty_precision``, which the
   checksum needs. Only when it has arrived do we subscribe ``book`` for all
   the connection's symbols at the configured depth (a :class:`Reply` from the
   parser), so no book message can arrive before its precisions.
2. Kraken acks each symbol separately; ``"success": false`` naming one of our
   symbols (an unknown pair, a delisted one) refuses that book alone
   (:class:`~trio_books.errors.SymbolRejected` with Kraken's text); a refusal
   that names no symbol of ours (the instrument channel, a bad request) is the
   connection's (:class:`~trio_books.errors.VenueRejected`). A configured
   symbol missing from the instrument snapshot is refused the same way, and
   the book subscription leaves it out.
3. ``book`` ``snapshot`` replaces the symbol's book, ``update`` sets levels (a
   zero ``qty`` deletes; lists are in no particular order; one message may
   touch a price twice: applied in order). Kraken sends no delete for a level
   pushed out of the subscribed window and re-sends the level that enters it,
   so the book is truncated to the depth after every message (the core's
   :class:`~trio_books.book.OrderBook` does that).
4. Every snapshot and update carries ``checksum``: CRC32 of the top 10 asks
   (ascending) then the top 10 bids (descending), each price and quantity
   written with the pair's precision, ``.`` removed and leading zeros
   stripped. A mismatch fails that book alone (the core raises
   :class:`~trio_books.errors.ChecksumMismatch`); it is rebuilt on the live
   connection by unsubscribing and subscribing its ``book`` again with the
   same params (the docs' resync: step 6 of the notes), from the new snapshot.
5. Liveness: ``{"channel":"heartbeat"}`` about once a second when nothing
   else is sent, so any frame at all arrives at least about once a second; we
   also send ``{"method":"ping"}`` every 30 s (the server closes a connection
   idle for about a minute) and expect ``{"method":"pong"}``.

Prices and quantities are bare JSON numbers. They are decoded as their text
(``parse_float=str``, ``parse_int=str``) and never pass through float; the
parser writes them with the pair's precision (``0.566`` becomes ``0.5660``,
only padding, never rounding) so the served text is Kraken's canonical form.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final

import attrs

from ..book import OrderBook
from ..errors import BadFrame, SymbolRejected, VenueRejected
from ..model import BEAT, UNKNOWN, UNREQUESTED, Delta, Level, Reply, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, Subscription, Venue

WS_URL: Final = "wss://ws.kraken.com/v2"
DEPTHS: Final = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS: Final = 10
"""The checksum covers the top 10 of each side, whatever the subscribed depth."""
PING_TEXT: Final = '{"method":"ping"}'
INSTRUMENT_REQ_ID: Final = 1
BOOK_REQ_ID: Final = 2

_DECODE: Final = json.JSONDecoder(parse_float=str, parse_int=str).decode
"""Every JSON number comes back as its exact text (``connection_id`` exceeds 2**53,
prices and quantities must keep every digit)."""


@attrs.frozen(slots=True)
class Precision:
    """A pair's decimals, from the ``instrument`` channel."""

    price: int
    qty: int


# --- number text ------------------------------------------------------------------------
def _plain(text: str) -> str:
    """Exponent notation (``1e-08``) as plain decimal text, exactly."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadFrame(f"bad number {text!r}") from None
    if not value.is_finite():
        raise BadFrame(f"bad number {text!r}")
    return format(value, "f")


def pad(text: str, places: int) -> str:
    """``text`` written with at least ``places`` decimals. Only appends zeros,
    so the value never changes (a longer fraction is kept as it is)."""
    if "e" in text or "E" in text:
        text = _plain(text)
    dot = text.find(".")
    if dot < 0:
        return f"{text}.{'0' * places}" if places > 0 else text
    missing = places - (len(text) - dot - 1)
    return text + "0" * missing if missing > 0 else text


def checksum_digits(text: str, places: int | None) -> str:
    """One checksum field: ``text`` with ``places`` decimals, ``.`` removed,
    leading zeros stripped. ``places=None`` uses the text as written (Kraken v1,
    whose strings already carry the pair's decimals)."""
    if places is not None:
        if "e" in text or "E" in text:
            text = _plain(text)
        dot = text.find(".")
        have = len(text) - dot - 1 if dot >= 0 else 0
        if have < places:
            text = pad(text, places)
        elif have > places:  # more decimals than the pair has: write it the way Kraken would
            try:
                text = format(Decimal(text).quantize(Decimal(1).scaleb(-places)), "f")
            except InvalidOperation:
                raise BadFrame(f"bad number {text!r}") from None
    return text.replace(".", "").lstrip("0")


def book_checksum(bids: Iterable[Level], asks: Iterable[Level], precision: Precision | None = None) -> int:
    """Kraken's CRC32 of a book given best-first: the first 10 asks, then the
    first 10 bids. ``precision=None`` takes the numbers' text as written."""
    pp = precision.price if precision is not None else None
    qp = precision.qty if precision is not None else None
    parts: list[str] = []
    for levels in (asks, bids):
        for i, (price, qty) in enumerate(levels):
            if i >= CHECKSUM_LEVELS:
                break
            parts.append(checksum_digits(price, pp))
            parts.append(checksum_digits(qty, qp))
    return zlib.crc32("".join(parts).encode("ascii"))


# --- the per-connection protocol ----------------------------------------------------------
class _NoChain:
    """Kraken has no sequence ids: every update applies; the checksum is the check."""

    __slots__ = ()

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        return True

    def check(self, delta: Delta) -> Verdict:
        return Verdict.APPLY


_NO_CHAIN: Final = _NoChain()


class KrakenFeed:
    """One Kraken v2 connection: instrument first, then ``book`` for its symbols."""

    rest_snapshots = False

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self.url = spec.ws_base
        self.symbols = spec.symbols
        self.depth = spec.depth
        self.checksums = bool(spec.options.get("checksum", True))
        self._wanted = frozenset(spec.symbols)
        self.precision: dict[str, Precision] = {}
        self.book_requested = False

    # --- frames we send --------------------------------------------------------------------
    def subscribe(self) -> list[Subscription]:
        """The instrument channel first (its precisions); the book subscription
        follows as a reply once they are known (:meth:`book_request`)."""
        return [Subscription(json.dumps({"method": "subscribe", "params": {"channel": "instrument", "snapshot": True},
                                         "req_id": INSTRUMENT_REQ_ID}, separators=(",", ":")), tuple(self.symbols))]

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription]:
        """Rebuild one book (the notes' step 6): unsubscribe it and subscribe it
        again with the same params; a fresh snapshot follows the subscribe."""
        methods = ("unsubscribe", "subscribe") if unsubscribe else ("subscribe",)
        return [Subscription(self.book_request(m, [symbol]), (symbol,)) for m in methods]

    def book_request(self, method: str, symbols: Sequence[str]) -> str:
        """A ``book`` (un)subscribe; unsubscribe carries the same params (the docs: "same body")."""
        return json.dumps({"method": method, "params": {"channel": "book", "symbol": list(symbols), "depth": self.depth,
                                                        "snapshot": True}, "req_id": BOOK_REQ_ID}, separators=(",", ":"))

    # --- frames we receive ------------------------------------------------------------------
    def parse(self, raw: str | bytes) -> list:
        try:
            msg = _DECODE(raw if isinstance(raw, str) else raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadFrame(f"not JSON ({exc})") from None
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        channel = msg.get("channel")
        if channel == "book":
            return self._book(msg)
        if channel == "heartbeat":
            return []  # evidence of life: the watchdog counts every frame
        if channel == "instrument":
            return self._instrument(msg)
        if channel is not None:
            return [] if channel == "status" else [UNKNOWN]  # a channel we did not ask for: counted
        method = msg.get("method")
        if method == "pong":
            return [BEAT]
        if msg.get("success") is False:
            self._refused(msg, method)
        if method in ("subscribe", "unsubscribe"):
            return []  # acks (one per symbol); warnings are advisory
        return [UNKNOWN]

    def _refused(self, msg: dict, method: object) -> None:
        """``success: false``. For one of our symbols it refuses that book alone
        (:class:`SymbolRejected`, raised: the frame is about that symbol only);
        naming none of ours, it refuses the request (the connection's). A refused
        ``unsubscribe`` (of a resync) is let pass: the subscribe right behind it
        decides, and a book whose snapshot never comes is the core's sync timeout."""
        result = msg.get("result")
        result = result if type(result) is dict else {}
        symbol = msg.get("symbol") or result.get("symbol")
        error = str(msg.get("error"))[:200]
        if type(symbol) is str and symbol in self._wanted:
            if method == "unsubscribe":
                return
            raise SymbolRejected(symbol, f"kraken refused {method}: {error}")
        what = symbol or result.get("channel")
        where = f" {what}" if what else ""
        raise VenueRejected(f"kraken refused {method or 'a request'}{where}: {error}")

    def _instrument(self, msg: dict) -> list:
        data = msg.get("data")
        if type(data) is not dict or type(data.get("pairs", [])) is not list:
            raise BadFrame("instrument data is not an object with a pairs list")
        for pair in data.get("pairs", []):
            if type(pair) is not dict:
                raise BadFrame("instrument pair is not an object")
            symbol = pair.get("symbol")
            if type(symbol) is not str or symbol not in self._wanted:
                continue
            self.precision[symbol] = Precision(_small_int(pair.get("price_precision"), "price_precision"),
                                               _small_int(pair.get("qty_precision"), "qty_precision"))
        if self.book_requested or msg.get("type") != "snapshot":
            return []
        self.book_requested = True
        out: list = []
        known = []
        for symbol in self.symbols:
            if symbol in self.precision:
                known.append(symbol)
            else:
                hint = " (Kraken v2 spells XBT as BTC)" if "XBT" in symbol else ""
                out.append(SymbolRejected(symbol, f"not a Kraken spot pair: not in the instrument list{hint}"))
        if known:
            out.append(Reply(self.book_request("subscribe", known)))
        return out

    def _book(self, msg: dict) -> list:
        kind = msg.get("type")
        if kind != "snapshot" and kind != "update":
            raise BadFrame(f"book message of type {kind!r}")
        data = msg.get("data")
        if type(data) is not list:
            raise BadFrame("book data is not a list")
        out: list = []
        for item in data:
            if type(item) is not dict:
                raise BadFrame("book data item is not an object")
            symbol = item.get("symbol")
            if type(symbol) is not str:
                raise BadFrame("book data item without a symbol")
            if symbol not in self._wanted:  # a symbol this connection did not ask for
                out.append(UNREQUESTED)
                continue
            precision = self.precision.get(symbol)
            if precision is None:
                raise BadFrame(f"book data for {symbol} before its instrument precision")
            bids = _levels(item.get("bids"), precision, "bids")
            asks = _levels(item.get("asks"), precision, "asks")
            checksum = None
            if self.checksums:
                checksum = _checksum_value(item.get("checksum"))
            ts = _timestamp(item.get("timestamp"))
            if kind == "snapshot":
                out.append(Snapshot(symbol, bids, asks, None, ts, checksum, precision))
            else:
                out.append(Delta(symbol, bids, asks, exchange_ts=ts, checksum=checksum, extra=precision))
        return out

    # --- the rest of FeedProtocol -----------------------------------------------------------
    def new_sequencer(self, symbol: str) -> _NoChain:
        return _NO_CHAIN

    def snapshot_url(self, symbol: str) -> str:
        raise TypeError("Kraken v2 pushes its snapshots on the socket")  # never called: rest_snapshots is False

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        raise TypeError("Kraken v2 pushes its snapshots on the socket")  # never called: rest_snapshots is False

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        """The book after ``event`` (already truncated to the depth) against its checksum."""
        return book_checksum(book.top_bids(CHECKSUM_LEVELS), book.top_asks(CHECKSUM_LEVELS), event.extra) == event.checksum


def _levels(items: object, precision: Precision, name: str) -> list[Level]:
    if type(items) is not list:
        raise BadFrame(f"{name} is not a list")
    out: list[Level] = []
    pp, qp = precision.price, precision.qty
    for level in items:
        if type(level) is not dict:
            raise BadFrame(f"{name} level is not an object")
        price, qty = level.get("price"), level.get("qty")
        # numbers arrive as their JSON text; a quoted string must look like one too
        if type(price) is not str or type(qty) is not str or not (_numeric(price) and _numeric(qty)):
            raise BadFrame(f"{name} level without a numeric price and qty: {level!r}"[:200])
        out.append((pad(price, pp), pad(qty, qp)))
    return out


def _numeric(text: str) -> bool:
    return text[:1].isdigit() and text.isascii()


def _checksum_value(value: object) -> int:
    # parse_int=str hands it over as text; Kraken's checksum guide also shows it quoted
    if type(value) is not str or not (value.isascii() and value.isdigit()) or int(value) > 0xFFFFFFFF:
        raise BadFrame(f"book message without a valid checksum: {value!r}")
    return int(value)


def _small_int(value: object, name: str) -> int:
    if type(value) is not str or not (value.isascii() and value.isdigit()) or int(value) > 30:
        raise BadFrame(f"instrument {name} is not a small integer: {value!r}")
    return int(value)


def _timestamp(value: object) -> float | None:
    if type(value) is not str:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()  # RFC 3339 with "Z" (Python >= 3.11)
    except ValueError:
        return None


KRAKEN_SPOT: Final = Venue(
    id="kraken_spot",
    ws_url=WS_URL,
    rest_url=None,
    connect=KrakenFeed,
    # Any frame is evidence of life: heartbeats come about once a second when the
    # books are quiet (the largest gap in the captures is 1.03 s), so 10 s of nothing
    # is a dead connection. The 30 s application ping also keeps Kraken from closing
    # an idle connection after about a minute; its pong must come within 10 s.
    heartbeat=Heartbeat(watchdog=10.0, watchdog_on="any", ping_interval=30.0, ping_text=PING_TEXT,
                        pong_timeout=10.0, pong_on="beat"),
    # No documented symbol limit per connection; one book subscription carries
    # them all, so keep a connection's share of the books (and of the snapshots
    # that answer it at once) moderate.
    max_symbols_per_connection=50,
    depths=DEPTHS,
    max_depth=1000,
    default_depth=100,
    # the instrument snapshot lists every pair and asset in one message
    max_message_size=2**23,
    options={"checksum": bool},
    connect_budget=(150, 600.0),  # Cloudflare: about 150 attempts per rolling 10 minutes per IP
    maintains_window=True,  # it pushes the levels that enter its window: no proven-range tracking needed
    symbol_form=(r"[A-Z0-9]+/[A-Z0-9]+", "BASE/QUOTE in upper case, e.g. BTC/USD"),
)

__all__ = ["KRAKEN_SPOT", "KrakenFeed", "Precision", "book_checksum", "checksum_digits", "pad"]
