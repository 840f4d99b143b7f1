"""BookStore: the only shared state. Sessions write; readers get immutable views.

Everything here is synchronous and runs on the Trio thread, so a reader
always sees a book between two applied events, never half of one.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio

from . import analytics
from .book import OrderBook
from .errors import NotLive, UnknownBook
from .model import BookState, Level

INTEGRITY_REASONS = frozenset({"gap", "checksum", "crossed", "overflow", "bad_frame"})
# Why an event can be dropped without failing the attempt (VenueStats.ignored).
IGNORE_REASONS = ("unrequested", "unknown", "before_snapshot", "already_applied")


@attrs.frozen
class BookView:
    """An immutable copy of one book's top levels, taken at one moment."""

    venue: str
    symbol: str
    state: BookState
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    seq: int
    update_id: int | None
    exchange_ts: float | None
    received_ts: float | None
    # Per side, the levels the book provably knows completely and the worst price of
    # that range (None: the whole side). Only those levels are ever in bids/asks.
    complete_depth: tuple[int, int] = (0, 0)
    proven_bound: tuple[str | None, str | None] = (None, None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "venue": self.venue,
            "symbol": self.symbol,
            "state": self.state.value,
            "seq": self.seq,
            "bids": [list(level) for level in self.bids],
            "asks": [list(level) for level in self.asks],
        }
        if self.update_id is not None:
            out["update_id"] = self.update_id
        if self.exchange_ts is not None:
            out["exchange_ts"] = self.exchange_ts
        out["received_ts"] = self.received_ts
        out["complete_depth"] = {"bids": self.complete_depth[0], "asks": self.complete_depth[1]}
        out["proven_bound"] = {"bids": self.proven_bound[0], "asks": self.proven_bound[1]}
        return out

    def stats(self, top: int = 5, bands: Sequence[str | Decimal] = ("10", "50", "100")) -> dict[str, Any]:
        """Best bid/ask, mid, spread, micro-price, imbalance over the ``top`` levels and
        the depth within each band (bps of the mid), from this view's levels
        (see :mod:`trio_books.analytics` for the formulas and the rounding rule)."""
        return analytics.stats(analytics.Ladder(self.bids), analytics.Ladder(self.asks), top, [Decimal(b) for b in bands])

    def cost(self, side: str, *, base: str | Decimal | None = None, quote: str | Decimal | None = None) -> dict[str, Any]:
        """What a ``side`` ("buy"/"sell") of ``base`` units (or for ``quote`` units) costs
        against this view's levels: average and worst price, slippage against the mid,
        or ``sufficient: False`` when the view holds less. Take the view with ``depth=None``
        to use every level the book provably holds."""
        bids, asks = analytics.Ladder(self.bids), analytics.Ladder(self.asks)
        return analytics.cost(side, asks if side == "buy" else bids, analytics.mid_price(bids, asks),
                              base=analytics.as_amount(base, "base"), quote=analytics.as_amount(quote, "quote"))


@attrs.define
class BookEntry:
    venue: str
    symbol: str
    state: BookState = BookState.SYNCING
    book: OrderBook | None = None
    seq: int = 0  # per-book sequence number of served changes (bumped per applied batch)
    update_id: int | None = None
    exchange_ts: float | None = None
    received_ts: float | None = None  # wall clock, for users
    applied_at: float | None = None  # trio clock, for book age
    live_since: float | None = None
    # the book failure domain: resyncs of this book alone, by reason, and the
    # last fault (or the venue's refusal, while ``REJECTED``)
    resyncs: Counter = attrs.field(factory=Counter)
    error: str | None = None
    # the book task (keeper.BookKeeper) whose book is served: of the connections
    # that keep this book (a replacement, a hot standby), the one with it live
    owner: Any = None
    _changed: trio.Event | None = None

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed_event(self) -> trio.Event:
        if self._changed is None:
            self._changed = trio.Event()
        return self._changed


LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@attrs.define
class LatencyHistogram:
    """Exchange timestamp → book applied, in seconds (cumulative buckets are made on export)."""

    counts: list[int] = attrs.field(factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            seconds = 0.0  # clocks differ; never report negative latency
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


@attrs.define
class VenueStats:
    venue: str
    connections: int = 1
    connected: int = 0
    attempts: int = 0
    reconnects: int = 0
    failures: Counter = attrs.field(factory=Counter)
    consecutive_failures: int = 0
    last_message_at: float | None = None  # trio clock
    frames: int = 0
    bytes: int = 0
    snapshots_fetched: int = 0
    rest_errors: int = 0
    # events dropped on purpose, by reason (IGNORE_REASONS): counted, never silent
    ignored: Counter = attrs.field(factory=Counter)
    channel_high_water: int = 0
    channel_used: int = 0
    channel_capacity: int = 0
    last_error: str | None = None
    latency: "LatencyHistogram" = attrs.field(factory=lambda: LatencyHistogram())
    # resyncs of single books (the connection went on), by reason
    book_resyncs: Counter = attrs.field(factory=Counter)
    # drift audits by result: passed, failed, skipped
    audits: Counter = attrs.field(factory=Counter)

    @property
    def resyncs(self) -> int:
        """Rebuilds: single books (any book fault but a refusal), plus whole
        connections ended by a connection-wide integrity failure."""
        attempts = sum(n for reason, n in self.failures.items() if reason in INTEGRITY_REASONS)
        return attempts + sum(n for reason, n in self.book_resyncs.items() if reason != "rejected")


class BookStore:
    """Books and venue statistics for the whole process."""

    def __init__(self, books: Iterable[tuple[str, str]] = ()) -> None:
        self._books: dict[tuple[str, str], BookEntry] = {}
        self.venues: dict[str, VenueStats] = {}
        self._any_change = trio.Event()
        self.started_at = time.time()
        self.shard = ""  # "K/N" when this instance runs one shard
        self.sinks: dict[str, Any] = {}  # statistics of running sinks (e.g. "redis")
        # a capture of what is served (trio_books.sinks.parquet.CaptureTap), told of every
        # served book's state changes, (re)loads and applied changes; None: nobody captures
        self.tap: Any = None
        for venue, symbol in books:
            self.add(venue, symbol)

    def add(self, venue: str, symbol: str) -> None:
        self._books[(venue, symbol)] = BookEntry(venue, symbol)
        self.venues.setdefault(venue, VenueStats(venue))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._books

    def retain(self, venue: str, symbols) -> None:
        """Keep only ``symbols`` of ``venue`` (none: the venue goes, statistics too).
        A task of the old configuration that still holds a removed entry writes to
        nothing served (see :meth:`set_state`)."""
        keep = set(symbols)
        for key in [k for k in self._books if k[0] == venue and k[1] not in keep]:
            del self._books[key]
        if not keep:
            self.venues.pop(venue, None)
        self._any_change.set()
        self._any_change = trio.Event()

    # --- reading -------------------------------------------------------------------
    def entry(self, venue: str, symbol: str) -> BookEntry:
        try:
            return self._books[(venue, symbol)]
        except KeyError:
            if venue not in self.venues:
                raise UnknownBook(f"unknown venue {venue!r}") from None
            raise UnknownBook(f"unknown symbol {symbol!r} for venue {venue!r}") from None

    def entries(self) -> list[BookEntry]:
        return list(self._books.values())

    def symbols(self, venue: str) -> list[str]:
        return [s for (v, s) in self._books if v == venue]

    def state(self, venue: str, symbol: str) -> BookState:
        return self.entry(venue, symbol).state

    def view(self, venue: str, symbol: str, depth: int | None = None, *, allow_not_live: bool = False) -> BookView:
        """An immutable copy of the book; raises :class:`NotLive` unless live."""
        e = self.entry(venue, symbol)
        if e.state is not BookState.LIVE or e.book is None:
            if not allow_not_live:
                raise NotLive(venue, symbol, e.state.value)
            return BookView(venue, symbol, e.state, (), (), e.seq, e.update_id, e.exchange_ts, e.received_ts)
        book = e.book
        return BookView(venue, symbol, e.state, tuple(book.top_bids(depth)), tuple(book.top_asks(depth)), e.seq, e.update_id,
                        e.exchange_ts, e.received_ts, book.complete_depth(), book.proven_bounds())

    async def wait_change(self) -> None:
        """Wait until any book changes state (used by waiters and the health view)."""
        await self._any_change.wait()

    # --- writing (sessions only) ---------------------------------------------------
    def set_state(self, venue: str, symbols: Iterable[str], state: BookState, error: str | None = None) -> list[str]:
        """Set books' state (synchronously: no reader can run in between);
        returns the symbols whose state changed. ``error`` is kept with a
        ``STALE``/``REJECTED`` book for /health and /venues."""
        changed = []
        now = trio.current_time()
        for symbol in symbols:
            e = self._books.get((venue, symbol))
            if e is None:  # removed by a new configuration while its old task wound down
                continue
            if error is not None:
                e.error = error
            if e.state is not state:
                e.state = state
                changed.append(symbol)
                e.seq += 1
                if state is BookState.LIVE:
                    e.live_since = now
                else:
                    e.live_since = None
                e.notify()
                if self.tap is not None:
                    self.tap.state(e)
        if changed:
            self._any_change.set()
            self._any_change = trio.Event()
        return changed

    def publish(self, venue: str, symbol: str, book: OrderBook) -> None:
        """Make ``book`` the one served for this symbol (after a successful sync)."""
        e = self._books.get((venue, symbol))
        if e is not None:  # (None: removed by a new configuration while its old task wound down)
            e.book = book
            if self.tap is not None:
                self.tap.published(e)

    def touched(self, e: BookEntry, update_id: int | None, exchange_ts: float | None) -> None:
        e.seq += 1
        e.update_id = update_id
        if exchange_ts is not None:
            e.exchange_ts = exchange_ts
        e.received_ts = time.time()
        e.applied_at = trio.current_time()
        e.notify()
        if self.tap is not None:
            self.tap.touched(e)
