"""What a venue is, as data plus pure functions. Nothing here does I/O.

A venue module builds one :class:`Venue` value. The session code drives it:

1. ``venue.connect(spec)`` gives a fresh :class:`FeedProtocol` for one
   connection attempt (its state dies with the attempt);
2. the session opens ``proto.url``, sends ``proto.subscribe()`` (each
   :class:`Subscription` names the symbols its frame subscribes: their sync
   clocks start when it goes out);
3. every frame goes through ``proto.parse(raw)`` which returns
   :class:`~trio_books.model.Snapshot`/:class:`~trio_books.model.Delta` events
   and control items (:class:`~trio_books.model.Reply` to send back,
   :data:`~trio_books.model.BEAT` for heartbeat evidence). A fault of one book
   (a symbol refused, a break in that book's chain) is a
   :class:`~trio_books.errors.BookFault`, raised or returned among the items;
   anything else it raises (:class:`~trio_books.errors.AttemptFailure`: a bad
   frame, a refusal of the whole request ...) ends the connection attempt;
4. when ``proto.rest_snapshots`` is true the core fetches
   ``proto.snapshot_url(symbol)`` over HTTP and hands the body to
   ``proto.parse_snapshot``; deltas are buffered until it arrives;
5. each symbol's deltas are checked by ``proto.new_sequencer(symbol)``;
   after every applied event ``proto.verify(book, event)`` checks the venue's
   checksum (return ``True`` where the venue has none);
6. a book that failed is resynced alone: REST venues fetch its snapshot
   again; the others send ``proto.resubscribe(symbol)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

import attrs

from ..book import OrderBook
from ..model import Beat, Delta, Reply, Snapshot, Verdict

Parsed = Snapshot | Delta | Reply | Beat


@attrs.frozen
class Heartbeat:
    """A venue's heartbeat rule, as data. :mod:`trio_books.heartbeat` enforces it.

    Attributes:
        watchdog: end the attempt when nothing that counts arrived for this long.
        watchdog_on: ``"any"`` — every frame counts; ``"beat"`` — only ``BEAT``
            items from the parser count (Coinbase heartbeats, BingX server pings).
        ping_interval: send a client ping this often (``None``: never).
        ping_text: the application-level ping frame; ``None`` sends an RFC 6455
            ping frame and waits for its pong.
        ping_when_idle: ping only when no frame arrived for ``ping_interval`` (OKX).
        pong_timeout: the answer must come within this long, or the attempt ends.
        pong_on: what counts as the answer to an application ping: ``"beat"``
            (a ``BEAT`` from the parser) or ``"any"`` frame.
    """

    watchdog: float = 60.0
    watchdog_on: Literal["any", "beat"] = "any"
    ping_interval: float | None = None
    ping_text: str | None = None
    ping_when_idle: bool = False
    pong_timeout: float = 10.0
    pong_on: Literal["any", "beat"] = "beat"


@attrs.frozen
class ConnectionSpec:
    """What one connection is asked to carry."""

    ws_base: str
    rest_base: str | None
    symbols: tuple[str, ...]
    depth: int
    options: Mapping[str, Any] = attrs.field(factory=dict)


class Subscription(NamedTuple):
    """One frame to send and the symbols it (un)subscribes."""

    frame: str
    symbols: tuple[str, ...]


class Sequencer(Protocol):
    """Per-symbol chain rule (update ids, sequence numbers)."""

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        """Start the chain from ``snap``. Return False when the snapshot is too
        old for the buffered stream (the core fetches a new one)."""

    def check(self, delta: Delta) -> Verdict:
        """APPLY, SKIP (stale, already in the book) or GAP (resync)."""


class FeedProtocol(Protocol):
    """One connection's protocol state. Pure: no I/O, no Trio."""

    url: str
    symbols: Sequence[str]
    rest_snapshots: bool

    def subscribe(self) -> list[Subscription]: ...

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription] | None:
        """The frames that rebuild one book on the live connection: unsubscribe
        (when ``unsubscribe``; a refused symbol was never subscribed) then
        subscribe its topic; ``[]`` where the next push is a full snapshot
        anyway; ``None`` where the venue has no per-book path."""

    def parse(self, raw: str | bytes) -> list[Parsed]: ...

    def sent(self, frame: str) -> None:
        """Replay only: a request this connection sent in the recording, so the
        answers that name its id are understood (the live feed learns its own
        requests when it makes them)."""

    def new_sequencer(self, symbol: str) -> Sequencer: ...

    def snapshot_url(self, symbol: str) -> str: ...

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot: ...

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool: ...


@attrs.frozen
class RestBudget:
    """A REST request-weight budget per venue (e.g. Binance: 6000 weight/minute)."""

    weight_per_minute: int
    snapshot_weight: Callable[[int], int]


@attrs.frozen
class Venue:
    """A venue: endpoints, limits and the factory of its per-connection protocol.

    Attributes:
        id: the public venue id (``binance_spot`` ...).
        ws_url: the documented WebSocket base; ``ws_url`` in config overrides it.
        rest_url: the documented REST base (``None``: the venue needs no REST).
        connect: builds a fresh :class:`FeedProtocol` for one connection.
        heartbeat: the venue's heartbeat rule.
        max_symbols_per_connection: symbols past this are split across connections.
        depths: the allowed ``depth`` values, or ``None`` for any in ``1..max_depth``.
        default_depth: used when the config says nothing.
        max_message_size: the WebSocket message limit for this venue (bytes).
        first_event_deadline: a connection that yields no book event this soon
            after connecting has failed (silently dead subscriptions).
        options: venue-specific config keys and their types.
        rest_budget: paces REST snapshots across the venue's connections.
        connect_budget: ``(attempts, seconds)``: at most this many connection
            attempts per period across the venue (Kraken: 150 per 10 min).
        subscribe_spacing: seconds between subscribe frames (venues that limit
            incoming messages per second).
        max_lifetime: the venue ends every connection after this long (Binance:
            24 h): the supervisor replaces it before then, make-before-break.
        symbol_form: ``(regex, description)`` of the venue's symbol notation,
            checked by ``check-config`` (a symbol in another venue's notation
            is a one-line error, not a silent rejection at run time).
        market: ``"spot"`` or ``"perp"`` (perpetual futures): consolidated
            depth keeps market types apart unless asked to mix them.
        shared_ids: a book's update ids are the venue's, the same on every
            connection (not Coinbase's per-connection ``sequence_num``): two
            connections' books at one id must agree (hot standby), and a
            replacement catches up with the old one's id before taking over.
        maintains_window: the venue pushes every level that enters its window
            (Bybit, OKX, Kraken, BingX); otherwise (Binance diff streams,
            Coinbase ``level2``) a depth-limited book tracks the price range it
            provably knows and serves only that (see :class:`~trio_books.book.OrderBook`).
    """

    id: str
    ws_url: str
    rest_url: str | None
    connect: Callable[[ConnectionSpec], FeedProtocol]
    heartbeat: Heartbeat = Heartbeat()
    max_symbols_per_connection: int = 100
    depths: tuple[int, ...] | None = None
    max_depth: int = 5000
    default_depth: int = 100
    max_message_size: int = 2**20
    first_event_deadline: float | None = None
    options: Mapping[str, type] = attrs.field(factory=dict)
    rest_budget: RestBudget | None = None
    connect_budget: tuple[int, float] | None = None
    subscribe_spacing: float = 0.0
    maintains_window: bool = False
    max_lifetime: float | None = None
    shared_ids: bool = True
    market: str = "spot"
    symbol_form: tuple[str, str] = (r"[A-Za-z0-9][A-Za-z0-9_]{0,29}", "BASEQUOTE, e.g. BTCUSDT")

    def depth_problem(self, depth: int) -> str | None:
        """Why ``depth`` is not allowed here, or ``None`` when it is."""
        if self.depths is not None:
            if depth not in self.depths:
                return "must be one of " + ", ".join(str(d) for d in self.depths)
            return None
        if not 1 <= depth <= self.max_depth:
            return f"must be between 1 and {self.max_depth}"
        return None
