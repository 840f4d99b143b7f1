"""One connection attempt: connect, subscribe, read, heartbeat, sync books.

Everything of an attempt lives in one nursery: the read loop, the heartbeat
task, the book task and its REST snapshot tasks. Any of them failing ends the
whole attempt; nothing of it outlives the attempt (the update channel and the
sequencers die with it, so no event of an old connection can reach a book).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import trio

from .backoff import AttemptBudget
from .config import ServiceConfig, VenueConfig
from .errors import AttemptFailure, BadFrame, ChannelOverflow, SequenceGap, SnapshotFailed, StaleFeed
from .heartbeat import Liveness, enforce_heartbeat
from .model import Beat, BookState, Delta, Reply, Snapshot, Unrequested
from .store import BookStore, VenueStats
from .sync import SnapshotTooOld, SymbolSync
from .transport import Connection, fetch, open_connection
from .venues import ConnectionSpec, FeedProtocol, Heartbeat, Venue

FIRST_SNAPSHOT_DELAY = 1.0
"""REST venues: fetch a symbol's snapshot at its first event, or after this long."""
MAX_SNAPSHOT_REFETCH = 3


class SyncTimeout(AttemptFailure):
    reason = "sync_timeout"


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
    rest_limiter: "RestLimiter | None" = None
    connect_budget: AttemptBudget | None = None
    recorder: Any = None

    @property
    def depth(self) -> int:
        return self.cfg.depth if self.cfg.depth is not None else self.venue.default_depth

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


class RestLimiter:
    """Paces REST snapshots to a venue's request-weight budget, shared by all
    the venue's connections: a sliding 60 s window, so no minute — however it
    is aligned — ever carries more weight than the venue allows. A 429/418
    blocks everyone on the venue until its ``Retry-After`` has passed."""

    WINDOW = 60.0

    def __init__(self, weight_per_minute: int) -> None:
        self.limit = weight_per_minute
        self.spent: deque[tuple[float, int]] = deque()
        self.total = 0
        self.lock = trio.Lock()
        self.blocked_until = -math.inf

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, trio.current_time() + seconds)

    async def acquire(self, weight: int) -> None:
        weight = min(weight, self.limit)
        async with self.lock:
            while True:
                now = trio.current_time()
                if now < self.blocked_until:
                    await trio.sleep_until(self.blocked_until)
                    continue
                while self.spent and self.spent[0][0] <= now - self.WINDOW:
                    self.total -= self.spent.popleft()[1]
                if self.total + weight <= self.limit:
                    self.spent.append((now, weight))
                    self.total += weight
                    return
                await trio.sleep_until(self.spent[0][0] + self.WINDOW)


async def run_attempt(rt: VenueRuntime, symbols: Sequence[str], log) -> None:
    """Run one connection for ``symbols`` until it fails. Always ends by raising."""
    venue = rt.venue
    spec = rt.spec(symbols)
    proto = venue.connect(spec)
    recorder = rt.recorder
    rec_id = recorder.new_connection(venue.id, proto.url, spec) if recorder is not None else 0
    async with open_connection(
        proto.url,
        max_message_size=venue.max_message_size,
        connect_timeout=rt.cfg.connect_timeout,
        transport=rt.service.transport,
        compress=bool(rt.cfg.options.get("compression", False)) if "compression" in venue.options else False,
    ) as conn:
        rt.stats.connected += 1
        rt.stats.channel_capacity = rt.service.channel_capacity
        try:
            now = trio.current_time()
            live = Liveness(last_frame=now, last_beat=now)
            send, recv = trio.open_memory_channel[list](rt.service.channel_capacity)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_loop, conn, proto, send, live, rt, rec_id, name=f"{venue.id}:read")
                nursery.start_soon(enforce_heartbeat, conn, rt.heartbeat(), live, name=f"{venue.id}:heartbeat")
                for i, frame in enumerate(proto.subscribe()):
                    if i and venue.subscribe_spacing:
                        await trio.sleep(venue.subscribe_spacing)
                    await conn.send(frame)
                    if recorder is not None:
                        recorder.frame(venue.id, rec_id, "tx", frame)
                log.debug("subscribed {}", ", ".join(symbols))
                nursery.start_soon(_maintain_books, recv, send, proto, rt, nursery, log, rec_id, name=f"{venue.id}:books")
        finally:
            rt.stats.connected -= 1


async def _read_loop(
    conn: Connection, proto: FeedProtocol, send: trio.MemorySendChannel, live: Liveness, rt: VenueRuntime, rec_id: int = 0
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
        if batch:
            got_event = True
            try:
                send.send_nowait(batch)
            except trio.WouldBlock:
                raise ChannelOverflow(
                    f"update channel full ({rt.service.channel_capacity} batches): the book task fell behind"
                ) from None
            used = send.statistics().current_buffer_used
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


async def _maintain_books(
    recv: trio.MemoryReceiveChannel,
    send: trio.MemorySendChannel,
    proto: FeedProtocol,
    rt: VenueRuntime,
    nursery: trio.Nursery,
    log,
    rec_id: int = 0,
) -> None:
    """The book task: sequence and apply events; publish books once synced."""
    venue_id = rt.venue.id
    store = rt.store
    depth = rt.depth
    ignored = rt.stats.ignored
    syncs = {s: SymbolSync(s, depth, proto.new_sequencer(s), proto.verify, proto.rest_snapshots, ignored) for s in proto.symbols}
    entries = {s: store.entry(venue_id, s) for s in proto.symbols}
    fetching: set[str] = set()
    refetches: dict[str, int] = {}
    pending = set(proto.symbols)

    def request_snapshot(symbol: str) -> None:
        if symbol not in fetching:
            fetching.add(symbol)
            nursery.start_soon(_fetch_snapshot, proto, symbol, send, rt, rec_id, sent_at, name=f"{venue_id}:snapshot:{symbol}")

    if proto.rest_snapshots:
        async def fetch_quiet_symbols() -> None:
            await trio.sleep(FIRST_SNAPSHOT_DELAY)
            for s in list(pending):
                request_snapshot(s)
        nursery.start_soon(fetch_quiet_symbols)

    sent_at: dict[str, float] | None = {} if proto.rest_snapshots else None
    nursery.start_soon(_sync_deadline, rt, pending, sent_at, name=f"{venue_id}:sync-deadline")

    async for batch in recv:
        touched: set[str] = set()
        for event in batch:
            sync = syncs.get(event.symbol)
            if sync is None:  # a symbol this connection did not ask for
                ignored["unrequested"] += 1
                continue
            if type(event) is Delta:
                if sync.on_delta(event):
                    touched.add(event.symbol)
                elif not sync.live and sync.rest:
                    request_snapshot(event.symbol)
                continue
            # a snapshot (from REST, or pushed on the socket)
            fetching.discard(event.symbol)
            try:
                sync.on_snapshot(event)
            except SnapshotTooOld:
                n = refetches[event.symbol] = refetches.get(event.symbol, 0) + 1
                if n > MAX_SNAPSHOT_REFETCH:
                    raise SequenceGap(f"{event.symbol}: {n} snapshots in a row were older than the stream") from None
                log.debug("{}: snapshot older than the first buffered event; fetching again", event.symbol)
                request_snapshot(event.symbol)
                continue
            touched.add(event.symbol)
            if event.symbol in pending:
                pending.discard(event.symbol)
                store.publish(venue_id, event.symbol, sync.book)
                store.set_state(venue_id, [event.symbol], BookState.LIVE)
                log.info("{} live ({} bids, {} asks)", event.symbol, len(sync.book.bids), len(sync.book.asks))
            elif entries[event.symbol].book is not sync.book:
                store.publish(venue_id, event.symbol, sync.book)
        now = time.time()
        latency = rt.stats.latency
        for symbol in touched:
            sync = syncs[symbol]
            if sync.live:
                store.touched(entries[symbol], sync.update_id, sync.exchange_ts)
                if sync.exchange_ts is not None:
                    latency.observe(now - sync.exchange_ts)
        rt.stats.channel_used = recv.statistics().current_buffer_used


async def _sync_deadline(rt: VenueRuntime, pending: set[str], sent_at: dict[str, float] | None) -> None:
    """Every book of the attempt must go live within ``sync_timeout``.

    With REST snapshots the clock of a symbol starts when its snapshot request
    is actually sent: a symbol waiting for the venue's request budget is being
    paced, not failing (otherwise a storm of resyncs would feed itself)."""
    limit = rt.cfg.sync_timeout
    started = trio.current_time()
    while pending:
        now = trio.current_time()
        deadlines = []
        for symbol in pending:
            if sent_at is None:
                deadlines.append(started + limit)
            elif symbol in sent_at:
                deadlines.append(sent_at[symbol] + limit)
        late = [d for d in deadlines if d <= now]
        if late:
            raise SyncTimeout(f"not live within {limit:g} s: {', '.join(sorted(pending))}")
        with trio.move_on_at(min(deadlines) if deadlines else now + 1.0):
            await rt.store.wait_change()


async def _fetch_snapshot(
    proto: FeedProtocol, symbol: str, send: trio.MemorySendChannel, rt: VenueRuntime, rec_id: int = 0,
    sent_at: dict[str, float] | None = None,
) -> None:
    """Fetch one REST snapshot (paced by the venue's budget) and post it to the
    book task through the update channel, in order with the stream."""
    assert rt.http is not None
    budget = rt.venue.rest_budget
    if rt.rest_limiter is not None and budget is not None:
        await rt.rest_limiter.acquire(budget.snapshot_weight(rt.depth))
    url = proto.snapshot_url(symbol)
    if sent_at is not None:
        sent_at[symbol] = trio.current_time()
    attempts = 0
    while True:
        attempts += 1
        try:
            body = await fetch(rt.http, url, timeout=rt.cfg.snapshot_timeout)
            break
        except SnapshotFailed as exc:
            rt.stats.rest_errors += 1
            if exc.retry_after is not None and rt.rest_limiter is not None:
                rt.rest_limiter.block(exc.retry_after)
            # 429/418 (told to wait) or repeated failures end the attempt; the
            # supervisor waits out Retry-After before the next one.
            if exc.retry_after is not None or attempts >= 3:
                raise
            await trio.sleep(0.5 * attempts)
    rt.stats.snapshots_fetched += 1
    if rt.recorder is not None:
        rt.recorder.frame(rt.venue.id, rec_id, "rest", body, url=url, symbol=symbol)
    try:
        snap = proto.parse_snapshot(symbol, body)
    except AttemptFailure:
        raise
    except Exception as exc:
        raise BadFrame(f"bad snapshot for {symbol} ({type(exc).__name__}: {str(exc)[:120]})") from None
    try:
        send.send_nowait([snap])
    except trio.WouldBlock:
        raise ChannelOverflow("update channel full when the snapshot arrived") from None


__all__ = ["NoData", "RestLimiter", "StaleFeed", "SyncTimeout", "VenueRuntime", "run_attempt"]
