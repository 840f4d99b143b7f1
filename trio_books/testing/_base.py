"""The shared machinery of the fake venues: a true book per symbol that evolves
at random (deterministic per seed), a real WebSocket server and, where the venue
has one, a real HTTP server, both on 127.0.0.1 with a random port, plus the
fault controls every fake offers.

A venue's fake subclasses :class:`FakeVenue` and speaks the venue's real wire
protocol in :meth:`FakeVenue.handle` (subscribe, pings), :meth:`FakeVenue.encode_delta`
(one update event as the venue frames it) and :meth:`FakeVenue.rest_routes`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ClassVar

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from ..book import OrderBook
from ..model import Level
from ._client import FakeClient

HOST = "127.0.0.1"


class _Skips(set):
    """The symbols whose next update :meth:`FakeVenue.skip_next_update` drops;
    ``taken`` counts, per symbol, the skips an update consumed (``discard``)."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: dict[str, int] = {}

    def discard(self, symbol: str) -> None:
        if symbol in self:
            self.taken[symbol] = self.taken.get(symbol, 0) + 1
        super().discard(symbol)

    def remove(self, symbol: str) -> None:
        if symbol not in self:
            raise KeyError(symbol)
        self.discard(symbol)


class FakeVenue:
    """A protocol-faithful fake exchange. Start it with ``await nursery.start(fake.serve)``.

    Args:
        symbols: the symbols it lists, in the venue's notation.
        seed: makes the random book changes reproducible.
        rate: update events per second per symbol (0: only :meth:`burst` sends).
        levels: levels per side of the true book at the start.
        depth: the most levels per side the true book keeps.
    """

    venue_id: ClassVar[str] = ""
    has_rest: ClassVar[bool] = False
    price_decimals: ClassVar[int] = 2
    qty_decimals: ClassVar[int] = 3
    max_message_size: ClassVar[int] = 2**20

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        seed: int = 1,
        rate: float = 20.0,
        levels: int = 60,
        depth: int = 400,
        changes_per_event: int = 3,
    ) -> None:
        self.symbols = list(symbols)
        self.rng = random.Random(seed)
        self.rate = rate
        self.depth = depth
        self.changes_per_event = changes_per_event
        self.truth: dict[str, OrderBook] = {}
        self._mid: dict[str, int] = {}
        # ticks the mid moves per update, by symbol (a trending market; see next_change)
        self.trend: dict[str, int] = {}
        for i, symbol in enumerate(self.symbols):
            self._mid[symbol] = (1000 + 100 * i) * 10**self.price_decimals
            book = self.truth[symbol] = OrderBook(depth)
            mid = self._mid[symbol]
            book.apply(
                [(self.fmt_price(mid - k), self.fmt_qty(self.rng.randint(1, 50_000))) for k in range(1, levels + 1)],
                [(self.fmt_price(mid + k), self.fmt_qty(self.rng.randint(1, 50_000))) for k in range(1, levels + 1)],
            )
        self.clients: list[FakeClient] = []
        self.ws_port: int | None = None
        self.rest_port: int | None = None
        self.paused = False
        self._corked: dict[FakeClient, list[bytes]] | None = None  # see corked()
        # fault state
        self._malformed_pending = False
        self._duplicate_pending = False
        self._skip = _Skips()
        self._hidden: set[str] = set()  # symbols whose latest update was skipped and nothing sent since
        self._corrupt: set[str] = set()
        self._untouched: set[str] = set()  # prices the random stream leaves alone (see corrupt_silently)
        self.reject_subscribe = False
        self._rest_failures: list[tuple[int, float | None]] = []
        self.snapshot_delay = 0.0
        self.refuse_connections = False
        # counters, for tests
        self.connections_accepted = 0
        self.snapshot_requests = 0
        self.rest_log: list[tuple[float, str]] = []
        self.accepted_at: list[float] = []  # trio time of every accepted connection (to measure backoff)  # (trio time, path?query) of every REST request
        self.events_sent = 0

    # --- formatting ----------------------------------------------------------------
    def fmt_price(self, ticks: int) -> str:
        d = self.price_decimals
        return f"{ticks // 10**d}.{ticks % 10**d:0{d}d}" if d else str(ticks)

    def fmt_qty(self, units: int) -> str:
        d = self.qty_decimals
        return f"{units // 10**d}.{units % 10**d:0{d}d}" if d else str(units)

    def zero_qty(self) -> str:
        return self.fmt_qty(0)

    # --- addresses -------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    def config_toml(self, **extra: Any) -> str:
        """A ``[venues.<id>]`` table pointing the venue at this fake."""
        lines = [f"[venues.{self.venue_id}]", "symbols = [" + ", ".join(f'"{s}"' for s in self.symbols) + "]",
                 f'ws_url = "{self.ws_url}"']
        if self.has_rest:
            lines.append(f'rest_url = "{self.rest_url}"')
        for key, value in extra.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
        return "\n".join(lines) + "\n"

    # --- the true book -------------------------------------------------------------------
    def top(self, symbol: str, n: int = 20) -> tuple[list[Level], list[Level]]:
        book = self.truth[symbol]
        return book.top_bids(n), book.top_asks(n)

    def next_change(self, symbol: str) -> tuple[list[Level], list[Level]]:
        """Make a random change to the true book and return it as level lists
        (``qty`` zero deletes). Bids stay below the mid and asks above: never crossed."""
        book = self.truth[symbol]
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        drift = self.trend.get(symbol, 0)
        if drift:  # the market trends: the mid moves, and the levels it passed are taken out
            mid = self._mid[symbol] = self._mid[symbol] + drift
            passed, out = (book.asks, asks) if drift > 0 else (book.bids, bids)
            for price, _ in passed.values():  # best first: the passed levels are the best ones
                ticks = round(Decimal(price) * 10**self.price_decimals)
                if (ticks > mid) if drift > 0 else (ticks < mid):
                    break
                out[price] = self.zero_qty()
        mid = self._mid[symbol]
        for _ in range(self.changes_per_event):
            is_bid = self.rng.random() < 0.5
            side = book.bids if is_bid else book.asks
            delete = len(side) > 5 and self.rng.random() < 0.25
            if delete:
                price = side.peekitem(self.rng.randrange(min(len(side), 40)))[1][0]
                if price in self._untouched:
                    continue
                qty = self.zero_qty()
            else:
                k = self.rng.randint(1, 80)
                price = self.fmt_price(mid - k if is_bid else mid + k)
                qty = self.fmt_qty(self.rng.randint(1, 50_000))
            (bids if is_bid else asks)[price] = qty
        bid_levels, ask_levels = list(bids.items()), list(asks.items())
        book.apply(bid_levels, ask_levels)
        return bid_levels, ask_levels

    # --- fault controls -----------------------------------------------------------------
    async def drop(self, code: int = 1011, reason: str = "fake: dropped") -> None:
        """Close every open connection (the venue hangs up). ``code=1001`` is the
        venue's periodic forced disconnect (e.g. Binance's 24 h cut)."""
        for client in list(self.clients):
            client.closed = True
            with trio.move_on_after(1):
                await client.ws.aclose(code=code, reason=reason)

    def unexpected_frame(self) -> str | bytes:
        """A well-formed frame of a type the venue does not document (subclasses
        whose frames are binary override this)."""
        return '{"event":"fake-unexpected","channel":"nope","data":[1,2,3]}'

    async def send_unexpected(self) -> None:
        """Send every open connection a frame of an unexpected message type."""
        frame = self.unexpected_frame()
        for client in list(self.clients):
            await client.send(frame)

    def duplicate_next(self) -> None:
        """The next frame sent is sent twice (a replayed frame)."""
        self._duplicate_pending = True

    def silence(self) -> None:
        """Every open connection stays open but gets nothing more and has its
        application pings ignored. New connections are served normally."""
        for client in self.clients:
            client.silent = True

    def skip_next_update(self, symbol: str | None = None) -> None:
        """The next update of ``symbol`` (of every symbol if None) changes the true
        book and advances its ids, but is never sent: a sequence gap. Only a
        later update shows the gap, so a streaming fake (``rate > 0``) that is
        paused right after the skipped update sends one more update of the
        symbol before it holds still (see :meth:`hidden_gaps`)."""
        self._skip.update([symbol] if symbol else self.symbols)

    def send_malformed(self) -> None:
        """The next frame sent is cut in half."""
        self._malformed_pending = True

    def corrupt_checksum_next(self, symbol: str | None = None) -> None:
        """Venues with checksums: the next update of ``symbol`` carries a wrong one."""
        self._corrupt.update([symbol] if symbol else self.symbols)

    def corrupt_silently(self, symbol: str, rank: int = 3) -> Level:
        """Add a bid to the true book between the levels at ``rank`` and
        ``rank + 1`` (half a tick: a price the random stream never changes) and
        send nothing, with the ids intact: what an update lost on the venue's
        side leaves behind. Only an audit against a fresh snapshot can see it."""
        top = self.truth[symbol].top_bids(rank + 2)
        price = str((Decimal(top[rank][0]) + Decimal(top[rank + 1][0])) / 2)
        level = (price, self.fmt_qty(self.rng.randint(1, 50_000)))
        self._untouched.add(price)
        self.truth[symbol].apply([level], [])
        return level

    def pending_faults(self) -> list[str]:
        """Faults injected but not yet carried out (they wait for the next frame or
        update, which a paused stream does not send)."""
        pending = [f"skip {s}" for s in sorted(self._skip)] + [f"corrupt {s}" for s in sorted(self._corrupt)]
        if self._malformed_pending:
            pending.append("malformed")
        if self._duplicate_pending:
            pending.append("duplicate")
        return pending

    def rest_fail(self, status: int = 429, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` REST requests fail with ``status`` (and ``Retry-After``)."""
        self._rest_failures.extend([(status, retry_after)] * count)

    # --- driving the stream ---------------------------------------------------------------
    @asynccontextmanager
    async def corked(self) -> AsyncIterator[None]:
        """Every frame sent to any connection inside the block goes out at its end,
        one write per connection: the same bytes in the same order, fewer writes
        (for load generators; a connection closed meanwhile gets nothing more)."""
        if self._corked is not None:  # nested: the outer block writes
            yield
            return
        self._corked = {}
        try:
            yield
            pending = self._corked
        finally:
            self._corked = None
        for client, chunks in pending.items():
            await client._flush(chunks)

    async def burst(self, n: int = 1, symbols: Iterable[str] | None = None) -> None:
        """Emit ``n`` update events per symbol right now."""
        for _ in range(n):
            for symbol in list(symbols or self.symbols):
                taken = self._skip.taken.get(symbol, 0)
                await self.emit(symbol)
                self.note_emitted(symbol, skipped=self._skip.taken.get(symbol, 0) != taken)

    def note_emitted(self, symbol: str, *, skipped: bool) -> None:
        """After one update of ``symbol``: a skipped one hides a gap until the
        symbol's next sent update shows it (fakes whose emit can send nothing for
        an update track this themselves: see :meth:`hidden_gaps`)."""
        if skipped:
            self._hidden.add(symbol)
        else:
            self._hidden.discard(symbol)

    def hidden_gaps(self) -> set[str]:
        """The symbols whose latest update was skipped with nothing sent after it:
        a gap no client can see yet (only a later update shows it)."""
        return set(self._hidden)

    async def emit(self, symbol: str) -> None:
        bids, asks = self.next_change(symbol)
        frames = self.encode_delta(symbol, bids, asks)
        if symbol in self._skip:
            self._skip.discard(symbol)
            return
        self.events_sent += 1
        for client in list(self.clients):
            if symbol in client.symbols:
                for frame in frames:
                    await client.send(frame)

    async def _stream(self) -> None:
        while True:
            if self.rate <= 0:
                await trio.sleep(0.05)
                continue
            await trio.sleep(1.0 / self.rate)
            if not self.paused:
                await self.burst(1)
            elif hidden := self.hidden_gaps():
                # Paused right after a skipped update, a stream would end on a gap
                # nobody can detect: the truth holds a change that was never sent
                # and the client, seeing nothing after it, stays live without it.
                # A venue's stream goes on, so one more update of each such symbol
                # goes out first; then the book holds still.
                await self.burst(1, sorted(hidden))

    # --- serving -------------------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus["FakeVenue"] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(self)`` once both servers listen."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_websocket(
                    self._accept, HOST, 0, None, message_queue_size=0,
                    max_message_size=self.max_message_size, task_status=task_status,
                )
            )
            self.ws_port = server.port
            if self.has_rest:
                binds = await nursery.start(self._serve_rest)
                self.rest_port = int(binds[0].rsplit(":", 1)[1])
            nursery.start_soon(self._stream)
            task_status.started(self)

    async def _serve_rest(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = HypercornConfig()
        cfg.bind = [f"{HOST}:0"]
        cfg.accesslog = None
        cfg.errorlog = None
        cfg.graceful_timeout = 0.5
        app = Starlette(routes=self.rest_routes())

        async def guard(scope, receive, send):
            if scope["type"] == "http":
                self.snapshot_requests += 1
                query = scope.get("query_string", b"").decode()
                self.rest_log.append((trio.current_time(), scope["path"] + ("?" + query if query else "")))
                if self._rest_failures:
                    status, retry = self._rest_failures.pop(0)
                    headers = {"Retry-After": f"{retry:g}"} if retry is not None else {}
                    await Response('{"code":-1003,"msg":"fake: failure injected"}', status, headers)(scope, receive, send)
                    return
                if self.snapshot_delay:
                    await trio.sleep(self.snapshot_delay)
            await app(scope, receive, send)

        await hypercorn_serve(guard, cfg, task_status=task_status)

    async def _accept(self, request: WebSocketRequest) -> None:
        if self.refuse_connections:
            await request.reject(503)
            return
        ws = await request.accept()
        client = FakeClient(self, ws, request.path)
        self.connections_accepted += 1
        self.accepted_at.append(trio.current_time())
        self.clients.append(client)
        try:
            await self.handle(client)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            client.closed = True
            self.clients.remove(client)

    # --- subclass hooks -----------------------------------------------------------------
    async def handle(self, client: FakeClient) -> None:
        """Speak the venue's protocol on one connection until it closes."""
        raise TypeError(f"{type(self).__name__} does not implement this hook")

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        """The frames that carry one update event (advance the venue's ids here)."""
        raise TypeError(f"{type(self).__name__} does not implement this hook")

    def rest_routes(self) -> list[Route]:
        return []


async def wait_forever_silent(client: FakeClient) -> None:
    """For a silenced connection: keep it open, read nothing (so pings go unanswered)."""
    await trio.sleep_forever()


__all__ = ["FakeClient", "FakeVenue", "HOST", "JSONResponse", "Request", "Response", "Route", "wait_forever_silent"]
