"""One connection attempt: the connection failure domain.

Everything of an attempt lives in one nursery: the read loop, the heartbeat
task, the subscription sender, and the book task with its REST snapshot tasks
(:mod:`trio_books.keeper`, the book failure domain). A connection fault — a
close, a stale heartbeat, an overflow, an unparseable frame, a connection-wide
sequence break — raised by any of them ends the whole attempt, and every book
of the attempt is marked not live in the very step the task raised (before the
socket's close handshake, before any reader can run). Nothing of an attempt
outlives it: the update channel and the sequencers die with it, so no event of
an old connection can reach a book.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import trio

from .backoff import AttemptBudget
from .config import ServiceConfig, VenueConfig
from .errors import AttemptFailure, BadFrame, BookFault, ChannelOverflow, StaleFeed, first_failure
from .heartbeat import Liveness, enforce_heartbeat
from .keeper import Backlog, BookKeeper, SyncTimeout
from .model import Beat, Delta, Planned, Reply, Snapshot, Unknown, Unrequested
from .rest import RestLimiter
from .store import BookStore, VenueStats
from .transport import Connection, open_connection
from .venues import ConnectionSpec, FeedProtocol, Heartbeat, Venue


class NoData(AttemptFailure):
    reason = "no_data"


@attrs.define
class VenueRuntime:
    """What every connection of one venue shares."""

    venue: Venue
    cfg: VenueConfig
    service: ServiceConfig
    store: BookStore
    stats: VenueStats
    http: httpx.AsyncClient | None = None
    rest_limiter: RestLimiter | None = None
    connect_budget: AttemptBudget | None = None
    recorder: Any = None
    rejected_delay: dict[str, float] = attrs.field(factory=dict)  # a refused symbol's next retry delay

    @property
    def depth(self) -> int:
        return self.cfg.depth if self.cfg.depth is not None else self.venue.default_depth

    @property
    def min_complete_depth(self) -> int:
        """Window-tracked books: refetch a snapshot below this many proven levels per side."""
        cfg = self.cfg.min_complete_depth
        return self.depth // 2 if cfg is None else cfg

    def heartbeat(self) -> Heartbeat:
        hb = self.venue.heartbeat
        changes = {k: getattr(self.cfg, k) for k in ("watchdog", "ping_interval", "pong_timeout") if getattr(self.cfg, k) is not None}
        return attrs.evolve(hb, **changes) if changes else hb

    def spec(self, symbols: Sequence[str]) -> ConnectionSpec:
        return ConnectionSpec(
            ws_base=(self.cfg.ws_url or self.venue.ws_url).rstrip("/"),
            rest_base=(self.cfg.rest_url or self.venue.rest_url or "").rstrip("/") or None,
            symbols=tuple(symbols),
            depth=self.depth,
            options=dict(self.cfg.options),
        )


async def run_attempt(rt: VenueRuntime, symbols: Sequence[str], log, attempt: Any) -> None:
    """Run one connection for ``symbols`` until it fails. Always ends by raising.

    ``attempt`` (:class:`~trio_books.supervise.Attempt`) hears when its books
    are all synced and when the venue announces the end of the connection; its
    ``group`` lists the book tasks of every connection that keeps these books
    (a replacement, a hot standby): a book is served from one that has it live."""
    venue = rt.venue
    spec = rt.spec(symbols)
    proto = venue.connect(spec)
    recorder = rt.recorder
    rec_id = recorder.new_connection(venue.id, proto.url, spec) if recorder is not None else 0
    guard = FailFast(rt.store, venue.id, symbols, attempt)
    async with open_connection(
        proto.url,
        max_message_size=venue.max_message_size,
        connect_timeout=rt.cfg.connect_timeout,
        transport=rt.service.transport,
    ) as conn:
        rt.stats.connected += 1
        rt.stats.channel_capacity = rt.service.channel_capacity
        try:
            now = trio.current_time()
            live = Liveness(last_frame=now, last_beat=now)
            send, recv = trio.open_memory_channel[list](rt.service.channel_capacity)
            out_send, out_recv = trio.open_memory_channel[Any](math.inf)
            async with trio.open_nursery() as nursery:
                spawn = guard.spawner(nursery)
                keeper = attempt.keeper = BookKeeper(rt, proto, out_send, send, spawn, log, attempt, rec_id)
                attempt.group.append(keeper)
                # the book task and the reader drain from before the first subscribe frame
                spawn(keeper.run, recv, name=f"{venue.id}:books")
                spawn(_read_loop, conn, proto, send, live, rt, rec_id, attempt.plan_end, keeper.backlog, name=f"{venue.id}:read")
                spawn(enforce_heartbeat, conn, rt.heartbeat(), live, name=f"{venue.id}:heartbeat")
                spawn(keeper.enforce_deadlines, name=f"{venue.id}:sync-deadlines")
                if proto.rest_snapshots:
                    spawn(keeper.fetch_quiet_books, name=f"{venue.id}:quiet-books")
                    if rt.cfg.audit_interval > 0:
                        spawn(keeper.audit_books, name=f"{venue.id}:audit")
                subscriptions = proto.subscribe()
                named = {s for sub in subscriptions for s in sub.symbols}
                keeper.requested([s for s in symbols if s not in named])  # subscribed by the URL itself
                for sub in subscriptions:
                    out_send.send_nowait(sub)
                spawn(_send_subscriptions, conn, out_recv, keeper, rt, rec_id, name=f"{venue.id}:subscribe")
        finally:
            rt.stats.connected -= 1


class FailFast:
    """Marks every book of an attempt stale the moment any task of it raises.

    Each task of the attempt runs inside it (:meth:`spawner`); its ``__exit__``
    runs in the same scheduling step as the ``raise``, so no reader — HTTP,
    ``/ws``, the library, the Redis sink — can see a book of a dying connection
    as live, not even during the socket's close handshake. Cancellation alone
    (another task failed first, or shutdown) changes nothing."""

    def __init__(self, store: BookStore, venue: str, symbols: Sequence[str], attempt: Any) -> None:
        self.store, self.venue, self.symbols, self.attempt = store, venue, symbols, attempt

    def __enter__(self) -> "FailFast":
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and not _only_cancelled(exc) and self.attempt.keeper is not None:
            exc = first_failure(exc)  # two tasks failing in one step raise a group
            why = f"{exc.reason}: {exc}" if isinstance(exc, AttemptFailure) else f"error: {type(exc).__name__}: {exc}"
            self.attempt.keeper.release(f"connection ended ({why[:200]})")
        return False

    def spawner(self, nursery: trio.Nursery):
        def spawn(fn, *args: Any, name: str) -> None:
            async def guarded() -> None:
                with self:
                    await fn(*args)

            nursery.start_soon(guarded, name=name)

        return spawn


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


async def _send_subscriptions(conn: Connection, outbox: trio.MemoryReceiveChannel, keeper: BookKeeper,
                              rt: VenueRuntime, rec_id: int = 0) -> None:
    """Send subscription frames (the first ones, then per-book resubscriptions)
    paced by the venue's ``subscribe_spacing``; each book's sync clock starts
    when the frame naming it goes out."""
    spacing = rt.venue.subscribe_spacing
    last = -math.inf
    async for sub in outbox:
        wait = last + spacing - trio.current_time()
        if wait > 0:
            await trio.sleep(wait)
        await conn.send(sub.frame)
        last = trio.current_time()
        if rt.recorder is not None:
            rt.recorder.frame(rt.venue.id, rec_id, "tx", sub.frame)
        keeper.requested(sub.symbols)


async def _read_loop(
    conn: Connection, proto: FeedProtocol, send: trio.MemorySendChannel, live: Liveness, rt: VenueRuntime, rec_id: int = 0,
    on_planned: Any = None, backlog: Backlog | None = None,
) -> None:
    """Decode and parse every frame, answer pings, and hand each socket read's
    events to the book task in one batch. Never blocks on the book task: a full
    channel is a :class:`ChannelOverflow` that ends the attempt."""
    parse = proto.parse
    stats = rt.stats
    deadline = rt.venue.first_event_deadline
    got_event = deadline is None
    started = trio.current_time()
    recorder = rt.recorder
    if backlog is None:
        backlog = Backlog()
    while True:
        if got_event:
            frames = await conn.receive_batch()
        else:
            frames = None
            with trio.move_on_after(max(0.0, started + deadline - trio.current_time())):
                frames = await conn.receive_batch()
            if frames is None:
                raise NoData(f"no book event within {deadline:g} s of subscribing (is the endpoint right?)")
        now = trio.current_time()
        live.last_frame = now
        stats.last_message_at = now
        stats.frames += len(frames)
        stats.bytes += sum(map(len, frames))
        batch: list = []
        for raw in frames:
            if recorder is not None:
                recorder.frame(rt.venue.id, rec_id, "rx", raw)
            try:  # parse_frame(), inlined: one call less per frame on the hot path
                items = parse(raw)
            except BookFault as exc:  # one book's fault: in order with the events, to the book task
                items = (exc,)
            except AttemptFailure:
                raise
            except Exception as exc:
                raise bad_frame(exc, raw) from None
            for item in items:
                kind = type(item)
                if kind is Delta or kind is Snapshot:
                    batch.append(item)
                elif kind is Reply:
                    await conn.send(item.text)
                    if recorder is not None:
                        recorder.frame(rt.venue.id, rec_id, "tx", item.text)
                elif kind is Beat:
                    live.last_beat = now
                elif kind is Unrequested:
                    stats.ignored["unrequested"] += 1
                elif kind is Unknown:
                    stats.ignored["unknown"] += 1
                elif kind is Planned and on_planned is not None:
                    on_planned(item.why)
                elif isinstance(item, BookFault):  # one book's fault, in a frame that carries several books
                    batch.append(item)
        if batch:
            got_event = True
            try:
                send.send_nowait(batch)
            except trio.WouldBlock:
                raise ChannelOverflow(
                    f"update channel full ({rt.service.channel_capacity} batches): the book task fell behind"
                ) from None
            backlog.put += 1
            used = backlog.put - backlog.taken
            stats.channel_used = used
            if used > stats.channel_high_water:
                stats.channel_high_water = used


def parse_frame(parse, raw: str | bytes) -> list:
    """Run a venue parser on one frame. The outcomes are a list of items or one
    typed :class:`AttemptFailure` (anything else a parser raises on bad input —
    a missing key, a wrong type — becomes :class:`BadFrame`)."""
    try:
        return parse(raw)
    except AttemptFailure:
        raise
    except Exception as exc:
        raise bad_frame(exc, raw) from None


def bad_frame(exc: Exception, raw: str | bytes) -> BadFrame:
    """The :class:`BadFrame` for a parser's ``exc`` on ``raw`` (one line, with an excerpt)."""
    return BadFrame(f"cannot parse frame ({type(exc).__name__}: {str(exc)[:120]}): {_excerpt(raw)}")


def _excerpt(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else repr(raw[:80])
    return text[:80] + ("…" if len(text) > 80 else "")


__all__ = ["FailFast", "NoData", "RestLimiter", "StaleFeed", "SyncTimeout", "VenueRuntime", "run_attempt"]
