"""The book failure domain: every book of one connection attempt.

The connection failure domain is :mod:`trio_books.session`: a close, a stale
heartbeat, an overflow or an unparseable frame ends the attempt as a whole.
Here each book fails alone. A :class:`~trio_books.errors.BookFault` — a gap in
its chain, a checksum mismatch, a crossed book, a snapshot that cannot be had,
the venue refusing the symbol — marks that book not live in the very
scheduling step the check failed (no reader can observe it), is counted per
book and logged once, and that book is resynced by the venue's own per-book
path while every other book of the connection stays live:

* REST venues (Binance family): buffer its stream again, fetch its snapshot
  again (paced by the venue-wide weight budget);
* socket-snapshot venues: ``proto.resubscribe(symbol)`` (unsubscribe and
  subscribe that topic; nothing at all where every push is a full snapshot);
  a venue with no per-book path returns ``None`` and the fault ends the attempt;
* a refused symbol is ``rejected`` (with the venue's text) and retried alone
  with a slow backoff.

Live books are also kept up (:mod:`trio_books.upkeep`): a shallow window is
refreshed behind the scenes, and the drift audit compares books with the venue.

Two things escalate to a connection restart: a book resynced more than
``book_resync_limit`` times within ``book_resync_window`` (:class:`ResyncLimit`),
and a book that does not go live within ``sync_timeout`` of its subscription
or snapshot request going out (:class:`SyncTimeout`: the venue did not answer).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import trio

from .audit import Audit
from .errors import (
    AttemptFailure,
    BookFault,
    ChannelOverflow,
    ResyncLimit,
    SequenceGap,
    ShallowBook,
    SnapshotUnusable,
    SymbolRejected,
    VenueRejected,
)
from .log import RateLimiter
from .model import BookState, Delta, Snapshot
from .rest import fetch_snapshot
from .serving import Serving
from .sync import SnapshotTooOld, SymbolSync
from .upkeep import Fetched, LiveUpkeep

FIRST_SNAPSHOT_DELAY = 1.0
"""REST venues: fetch a book's snapshot at its first event, or this long after its stream was subscribed."""
MAX_SNAPSHOT_REFETCH = 3
REJECTED_RETRY_CAP = 3600.0


class SyncTimeout(AttemptFailure):
    reason = "sync_timeout"


class Backlog:
    """Batches put into and taken from an attempt's update channel: its occupancy
    for the metrics without a statistics object per batch (every sender counts)."""

    __slots__ = ("put", "taken")

    def __init__(self) -> None:
        self.put = self.taken = 0


class BookKeeper(LiveUpkeep, Serving):
    """Sequences and applies every event of one attempt; owns the books' states."""

    def __init__(self, rt: Any, proto: Any, outbox: trio.MemorySendChannel, updates: trio.MemorySendChannel,
                 spawn: Callable[..., None], log: Any, attempt: Any, rec_id: int = 0) -> None:
        self.rt, self.proto, self.log, self.rec_id = rt, proto, log, rec_id
        self.attempt = attempt  # hears when every book is synced (supervise.Attempt)
        self.group: list = attempt.group  # the keepers of every connection that keeps these books
        self.shared_ids = rt.venue.shared_ids
        self.venue_id = rt.venue.id
        self.store = rt.store
        self.outbox = outbox  # (frame, symbols) for the subscription sender
        self.updates = updates  # REST results join the stream here
        self.backlog = Backlog()  # counted by every sender into `updates` and by the book task
        self.spawn = spawn  # starts a task in the attempt's nursery
        self.rest = proto.rest_snapshots
        symbols = tuple(proto.symbols)
        self.syncs = {s: self._new_sync(s) for s in symbols}
        self.shadows: dict[str, SymbolSync] = {}  # live books being refreshed behind the scenes
        self.audits: dict[str, Audit] = {}  # live books being audited against the venue
        self.entries = {s: self.store.entry(self.venue_id, s) for s in symbols}
        self.gen = dict.fromkeys(symbols, 0)
        self.fetching: dict[str, int] = {}  # symbol → generation of the fetch in flight
        self.refetches: Counter = Counter()
        self.pending: set[str] = set(symbols)  # not live (and not rejected) yet
        self.requested_at: dict[str, float] = {}  # a pending book's sync clock: its request went out then
        self.subscribed_at: dict[str, float] = {}  # REST venues: its stream was subscribed then
        self.was_live: set[str] = set()
        self.resync_times: dict[str, deque[float]] = {}
        self.logged = RateLimiter(window=60.0)
        self._wake = trio.Event()  # wakes fetch_quiet_books
        self._unarmed: trio.Event | None = None  # set: enforce_deadlines waits for a first deadline

    def _new_sync(self, symbol: str) -> SymbolSync:
        p, rt = self.proto, self.rt
        return SymbolSync(symbol, rt.depth, p.new_sequencer(symbol), p.verify, self.rest, rt.stats.ignored,
                          tracked=not rt.venue.maintains_window, min_depth=rt.min_complete_depth)

    def _changed(self) -> None:
        self._wake.set()
        self._wake = trio.Event()
        if self._unarmed is not None:  # the deadline task sleeps without a deadline: one may exist now
            self._unarmed.set()
            self._unarmed = None

    # --- requests going out ----------------------------------------------------------
    def requested(self, symbols: Iterable[str]) -> None:
        """The subscription naming ``symbols`` went out now (the sender calls this)."""
        now = trio.current_time()
        for s in symbols:
            if s not in self.pending:
                continue
            if self.rest:
                self.subscribed_at[s] = now
            else:
                self.requested_at[s] = now
        self._changed()

    def request_snapshot(self, symbol: str, purpose: str = "sync") -> None:
        gen = self.gen[symbol]
        if self.fetching.get(symbol) != gen:
            self.fetching[symbol] = gen
            self.spawn(self._fetch, symbol, gen, purpose, name=f"{self.venue_id}:snapshot:{symbol}")

    async def _fetch(self, symbol: str, gen: int, purpose: str) -> None:
        def on_request() -> None:
            if self.gen[symbol] == gen and purpose == "sync":  # a refreshed or audited book is live: no deadline
                self.requested_at[symbol] = trio.current_time()
                self._changed()

        result = await fetch_snapshot(self.rt, self.proto, symbol, on_request, self.rec_id)
        try:
            self.updates.send_nowait([Fetched(gen, symbol, result, purpose)])
            self.backlog.put += 1
        except trio.WouldBlock:
            raise ChannelOverflow("update channel full when a snapshot arrived") from None

    async def fetch_quiet_books(self) -> None:
        """REST venues: a book whose stream has been subscribed for
        :data:`FIRST_SNAPSHOT_DELAY` without an event gets its snapshot anyway."""
        while True:
            now = trio.current_time()
            waiting = [s for s in self.pending if s in self.subscribed_at and s not in self.fetching]
            for s in waiting:
                if self.subscribed_at[s] + FIRST_SNAPSHOT_DELAY <= now:
                    self.request_snapshot(s)
            later = [self.subscribed_at[s] + FIRST_SNAPSHOT_DELAY for s in waiting if s not in self.fetching]
            with trio.move_on_at(min(later) if later else math.inf):
                await self._wake.wait()

    async def enforce_deadlines(self) -> None:
        """A pending book must go live within ``sync_timeout`` of its request
        going out; a book still waiting for the request budget is being paced,
        not failing (otherwise a storm of resyncs would feed itself).

        Sleeps until the earliest deadline; a request only wakes it when no
        deadline is armed (a new request's deadline is never earlier than an
        armed one: request times only grow), so a live connection costs this
        task nothing, and a start-up of n books no longer costs it a scan of
        every pending book per request (n² steps)."""
        limit = self.rt.cfg.sync_timeout
        while True:
            starts = [self.requested_at[s] for s in self.pending if s in self.requested_at]
            if not starts:
                self._unarmed = trio.Event()
                await self._unarmed.wait()
                continue
            due = min(starts) + limit
            if due <= trio.current_time():
                late = sorted(s for s in self.pending if s in self.requested_at and self.requested_at[s] + limit <= trio.current_time())
                shown = ", ".join(late[:10]) + (f" and {len(late) - 10} more" if len(late) > 10 else "")
                raise SyncTimeout(f"not live within {limit:g} s of the request: {shown}")
            await trio.sleep_until(due)

    # --- the book task -----------------------------------------------------------------
    async def run(self, recv: trio.MemoryReceiveChannel) -> None:
        """Sequence and apply every batch; publish books once synced."""
        syncs, entries, store, ignored = self.syncs, self.entries, self.store, self.rt.stats.ignored
        rest = self.rest
        tap = store.tap  # a capture (trio_books.sinks.parquet) hears of every applied change
        backlog, stats = self.backlog, self.rt.stats
        async for batch in recv:
            backlog.taken += 1
            touched: set[str] = set()
            for event in batch:
                kind = type(event)
                if kind is Delta:
                    symbol = event.symbol
                    sync = syncs.get(symbol)
                    if sync is None:  # a symbol this connection did not ask for
                        ignored["unrequested"] += 1
                        continue
                    try:
                        if sync.on_delta(event):
                            touched.add(symbol)
                            if tap is not None:
                                tap.applied(entries[symbol], sync.book, event)
                            if sync.shallow and symbol not in self.shadows:
                                self._refresh(symbol)
                        elif rest and not sync.live:
                            self.request_snapshot(symbol)
                    except BookFault as exc:
                        self.fault(exc)
                    shadow = self.shadows.get(symbol) if self.shadows else None
                    if shadow is not None:
                        try:
                            shadow.on_delta(event)  # buffers until its snapshot
                        except BookFault:  # the live book is unaffected: drop the shadow
                            del self.shadows[symbol]
                    audit = self.audits.get(symbol) if self.audits else None
                    if audit is not None:
                        audit.record(event)
                        self._audit_when_caught_up(symbol)
                elif kind is Snapshot:
                    try:
                        self._snapshot(event, touched)
                    except BookFault as exc:
                        self.fault(exc)
                elif kind is Fetched:
                    if event.gen != self.gen[event.symbol]:
                        continue  # overtaken by a resync of that book
                    del self.fetching[event.symbol]
                    if event.purpose == "shadow":
                        self._shadow_fetched(event, touched)
                    elif event.purpose == "audit":
                        self._audit_fetched(event)
                    elif isinstance(event.result, BookFault):
                        self.fault(event.result)
                    else:
                        try:
                            self._snapshot(event.result, touched)
                        except BookFault as exc:
                            self.fault(exc)
                        except AttemptFailure as exc:  # a REST body the chain cannot start from: this book's alone
                            self.fault(SnapshotUnusable(event.symbol, str(exc)))
                else:  # a BookFault a parser reported
                    self.fault(event)
            now = time.time()
            latency = self.rt.stats.latency
            if len(self.group) > 1 and self.shared_ids:
                self._compare_with_peers(touched)
            for symbol in touched:
                sync = syncs[symbol]
                if sync.live and entries[symbol].owner is self:
                    store.touched(entries[symbol], sync.update_id, sync.exchange_ts)
                    if sync.exchange_ts is not None:
                        latency.observe(now - sync.exchange_ts)
            stats.channel_used = backlog.put - backlog.taken

    def _snapshot(self, snap: Snapshot, touched: set[str]) -> None:
        symbol = snap.symbol
        sync = self.syncs.get(symbol)
        if sync is None:
            self.rt.stats.ignored["unrequested"] += 1
            return
        try:
            sync.on_snapshot(snap)
        except SnapshotTooOld:
            n = self.refetches[symbol] = self.refetches[symbol] + 1
            if n > MAX_SNAPSHOT_REFETCH:
                self.refetches[symbol] = 0
                self.fault(SequenceGap(symbol, f"{n} snapshots in a row were older than the stream"))
            else:
                self.log.debug("{}: snapshot older than the first buffered event; fetching again", symbol)
                self.request_snapshot(symbol)
            return
        self.refetches[symbol] = 0
        touched.add(symbol)
        entry = self.entries[symbol]
        if symbol in self.pending:
            self.pending.discard(symbol)
            self.requested_at.pop(symbol, None)
            owner = entry.owner
            if owner is None or not owner.syncs[symbol].live:  # nobody serves it live: this book does
                self._claim(symbol)
            level = "DEBUG" if symbol in self.was_live else "INFO"
            self.was_live.add(symbol)
            self.rt.rejected_delay.pop(symbol, None)
            self.log.log(level, "{} live ({} bids, {} asks)", symbol, len(sync.book.bids), len(sync.book.asks))
            if self.rt.recorder is not None:
                self.rt.recorder.live(self.venue_id, self.rec_id, symbol)
            self._changed()
            self._check_synced()
        elif entry.owner is self:  # a new book, or the served one reloaded (a capture takes a new snapshot)
            self.store.publish(self.venue_id, symbol, sync.book)

    # --- serving ---------------------------------------------------------------------------
    def _check_synced(self) -> None:
        if not self.pending:
            self.attempt.synced.set()

    # --- faults ------------------------------------------------------------------------
    def fault(self, exc: BookFault) -> None:
        """One book failed: not live now (same step), counted, logged once, resynced alone."""
        symbol = exc.symbol
        if symbol not in self.syncs:
            self.rt.stats.ignored["unrequested"] += 1
            return
        rejected = isinstance(exc, SymbolRejected)
        state = BookState.REJECTED if rejected else BookState.STALE
        entry = self.entries[symbol]
        if entry.owner is self:
            peer = self._live_peer(symbol)
            if peer is not None:  # another connection has it live: serve that one, in the same step
                peer._claim(symbol)
                entry.error = f"{exc.reason}: {exc}"
            else:
                entry.owner = None
                self.store.set_state(self.venue_id, [symbol], state, error=f"{exc.reason}: {exc}")
        elif entry.owner is None and self.entries[symbol].state is not state and not self._live_peer(symbol):
            self.store.set_state(self.venue_id, [symbol], state, error=f"{exc.reason}: {exc}")
        else:
            entry.error = f"{exc.reason}: {exc}"
        self.entries[symbol].resyncs[exc.reason] += 1
        self.rt.stats.book_resyncs[exc.reason] += 1
        if rejected and symbol in self.was_live:
            raise VenueRejected(f"a resubscription of a live book was refused: {exc}")
        if not rejected and not isinstance(exc, ShallowBook):  # a thin window is the market, not a fault
            self._count_resync(symbol, exc)
        self.gen[symbol] += 1
        self.fetching.pop(symbol, None)
        self.shadows.pop(symbol, None)
        self.audits.pop(symbol, None)
        self.syncs[symbol] = self._new_sync(symbol)
        self.pending.add(symbol)
        self.requested_at.pop(symbol, None)
        self._changed()
        repeats = self.logged.check((symbol, exc.reason))
        if rejected:
            delay = self.rt.rejected_delay.get(symbol, self.rt.cfg.rejected_retry)
            self.rt.rejected_delay[symbol] = min(delay * 2, REJECTED_RETRY_CAP)
            self.pending.discard(symbol)
            self._check_synced()
            if repeats is not None:
                self.log.error("{} rejected by the venue: {}; other books unaffected; retry in {:.0f} s", symbol, exc, delay)
            self.spawn(self._retry_rejected, symbol, self.gen[symbol], delay, name=f"{self.venue_id}:retry:{symbol}")
            return
        if repeats is not None:
            more = f" (and {repeats} more like it)" if repeats else ""
            self.log.warning("{} not live ({}): {}{}; resyncing this book alone", symbol, exc.reason, exc, more)
        self._resync(symbol, exc, unsubscribe=True)

    def _count_resync(self, symbol: str, exc: BookFault) -> None:
        cfg = self.rt.cfg
        now = trio.current_time()
        times = self.resync_times.setdefault(symbol, deque())
        times.append(now)
        while times[0] <= now - cfg.book_resync_window:
            times.popleft()
        if len(times) > cfg.book_resync_limit:
            raise ResyncLimit(f"{symbol}: {len(times)} resyncs within {cfg.book_resync_window:g} s (last: {exc})")

    def _resync(self, symbol: str, exc: BookFault | None, *, unsubscribe: bool) -> None:
        if self.rest and unsubscribe:  # its stream stays subscribed: a new snapshot rebuilds the book
            self.request_snapshot(symbol)
            return
        frames = self.proto.resubscribe(symbol, unsubscribe=unsubscribe)
        if frames is None:
            if self.rest:  # a refused symbol of a venue whose streams need no subscription of their own
                self.request_snapshot(symbol)
                return
            # the venue has no per-book path: the connection restarts
            raise exc if exc is not None else SymbolRejected(symbol, "cannot be subscribed again on this connection")
        if frames:
            self.subscribed_at.pop(symbol, None)  # REST venues: its snapshot waits for the new subscription
            for sub in frames:
                self.outbox.send_nowait(sub)
        elif self.rest:
            self.request_snapshot(symbol)
        else:  # every push is a full snapshot: the next one rebuilds the book
            self.requested([symbol])

    async def _retry_rejected(self, symbol: str, gen: int, delay: float) -> None:
        await trio.sleep(delay)
        if self.gen[symbol] != gen:
            return
        if self.entries[symbol].owner is None:
            self.store.set_state(self.venue_id, [symbol], BookState.SYNCING)
        self.pending.add(symbol)
        self._changed()
        self._resync(symbol, None, unsubscribe=False)


__all__ = ["Backlog", "BookKeeper", "FIRST_SNAPSHOT_DELAY", "Fetched", "SyncTimeout"]
