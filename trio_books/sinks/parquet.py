"""Parquet capture sink: what every served book applied, for research (``[sinks.parquet]``).

The Trio side of :mod:`trio_books.history`. :class:`CaptureTap` is installed as
``store.tap`` and hears, synchronously on the Trio thread, four things from the
store and the book task (nothing else of the book domain knows about it):

* ``applied(entry, book, delta)``: a change applied to a live book;
* ``published(entry)``: the served book was replaced or reloaded from a snapshot;
* ``touched(entry)``: the end of a batch that changed a served book;
* ``state(entry)``: a book changed state.

A change is kept only when it was applied to the book being served, while the
capture holds a snapshot of that book; a full snapshot is taken when a book is
published (after every resync, a hand-over, a reloaded snapshot), every
``snapshot_interval`` and after a lost batch. Every interval in which a book was
not live is a gap: it opens when the book leaves ``live`` and closes at the next
snapshot, so a rebuilt book starts at a snapshot after every gap.

Rows wait in memory as tuples (expanded in the writer thread). Every
``flush_interval`` (or sooner, past ``max_rows``) they go as one batch through a
bounded channel to one task that hands each batch to
:class:`trio_books.history.writer.HistoryWriter` in a worker thread. When the
channel is full the batch is dropped and every book of it gets a gap
(``overflow``) until its next snapshot: memory stays bounded whatever the rate.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..config import ParquetSinkConfig
from ..log import RateLimiter, named
from ..model import BookState


def wall_clock_us() -> Callable[[], int]:
    """Microseconds since the epoch that never go back within a run (wall clock at
    start plus the monotonic clock since)."""
    base_wall, base_mono = time.time_ns() // 1000, time.monotonic_ns() // 1000
    return lambda: base_wall + time.monotonic_ns() // 1000 - base_mono


@attrs.define
class _Book:
    """What the capture knows of one book."""

    venue: str
    symbol: str
    entry: Any = None
    seq: int = 0  # rows of this book in this run (changes and snapshots), in order
    gap_start: int | None = None  # an open gap: no snapshot since the book left live
    gap_reason: str = ""
    dirty: bool = True  # the next touch (or tick) takes a snapshot
    last_snapshot: int = 0


@attrs.define
class Batch:
    """Everything captured between two flushes, by venue. ``until``: every row at or
    before it is in this batch or an earlier one."""

    until: int
    since: int = 0  # every row after it and at or before ``until`` is in this batch
    changes: dict[str, list] = attrs.field(factory=dict)  # venue -> [(symbol, seq, recv, exch, uid, bids, asks)]
    snapshots: dict[str, list] = attrs.field(factory=dict)  # venue -> [Snapshot rows]
    gaps: dict[str, list] = attrs.field(factory=dict)  # venue -> [(symbol, start, end | None, reason)]
    rows: int = 0


@attrs.define
class CaptureStats:
    changes: int = 0
    snapshots: int = 0
    batches: int = 0
    dropped_batches: int = 0  # the queue was full
    failed_batches: int = 0  # the writer failed (counted in dropped_batches too)
    gaps: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


class CaptureTap:
    """Collects rows on the Trio thread (see the module doc)."""

    def __init__(self, store: Any, cfg: ParquetSinkConfig, clock: Callable[[], int], started: int) -> None:
        self.store, self.cfg, self.clock = store, cfg, clock
        self.interval = int(cfg.snapshot_interval * 1e6)
        self.books: dict[tuple[str, str], _Book] = {}
        self.stats = CaptureStats()
        self.logged = RateLimiter(window=60.0)
        now = started
        self.batch = Batch(until=now, since=now)
        for entry in store.entries():
            self._book(entry, now)

    def _book(self, entry: Any, now: int) -> _Book:
        key = (entry.venue, entry.symbol)
        cap = self.books.get(key)
        if cap is None:
            cap = self.books[key] = _Book(entry.venue, entry.symbol, entry, gap_start=now, gap_reason="capture started")
        cap.entry = entry
        return cap

    # --- hooks (store, book task) --------------------------------------------------------
    def applied(self, entry: Any, book: Any, delta: Any) -> None:
        cap = self.books.get((entry.venue, entry.symbol))
        if cap is None or cap.dirty or cap.gap_start is not None or entry.book is not book:
            return  # not the served book, or its snapshot is still to come (it will hold this change)
        cap.seq += 1
        ts = delta.exchange_ts
        self.batch.changes.setdefault(entry.venue, []).append(
            (entry.symbol, cap.seq, self.clock(), None if ts is None else round(ts * 1e6), delta.final_id, delta.bids, delta.asks))
        self.batch.rows += len(delta.bids) + len(delta.asks)

    def published(self, entry: Any) -> None:
        self._book(entry, self.clock()).dirty = True

    def touched(self, entry: Any) -> None:
        cap = self.books.get((entry.venue, entry.symbol))
        if cap is None:
            cap = self._book(entry, self.clock())
        now = self.clock()
        if cap.dirty or now - cap.last_snapshot >= self.interval:
            self._snapshot(cap, now)

    def state(self, entry: Any) -> None:
        now = self.clock()
        cap = self._book(entry, now)
        if entry.state is not BookState.LIVE and cap.gap_start is None:
            cap.gap_start, cap.gap_reason = now, entry.error or entry.state.value
            cap.dirty = True

    # --- rows --------------------------------------------------------------------------
    def _snapshot(self, cap: _Book, now: int) -> None:
        entry = cap.entry
        book = entry.book
        if entry.state is not BookState.LIVE or book is None:
            return
        cap.seq += 1
        ts = entry.exchange_ts
        bound_bid, bound_ask = book.proven_bounds()
        row = (entry.symbol, cap.seq, now, None if ts is None else round(ts * 1e6), entry.update_id, book.depth, book.tracked,
               bound_bid, bound_ask, book.bids.values(), book.asks.values())
        self.batch.snapshots.setdefault(entry.venue, []).append(row)
        self.batch.rows += len(book)
        self.stats.snapshots += 1
        cap.dirty, cap.last_snapshot = False, now
        if cap.gap_start is not None:
            self.batch.gaps.setdefault(cap.venue, []).append((cap.symbol, cap.gap_start, now, cap.gap_reason))
            self.stats.gaps += 1
            cap.gap_start = None

    def take(self) -> Batch:
        """The batch so far (every live book due a snapshot gets it first), and a new one."""
        now = self.clock()
        for cap in self.books.values():
            if cap.dirty and cap.entry is not None:
                self._snapshot(cap, now)
        batch, self.batch = self.batch, Batch(until=now, since=now)
        for cap in self.books.values():  # gaps still open are written too (a crash then keeps them)
            if cap.gap_start is not None:
                batch.gaps.setdefault(cap.venue, []).append((cap.symbol, cap.gap_start, None, cap.gap_reason))
        batch.until = now
        self.stats.changes += sum(map(len, batch.changes.values()))
        return batch

    def lost(self, batch: Batch) -> None:
        """``batch`` was not written (the queue was full, or the writer failed): each
        of its books has a gap from the batch's start until its next snapshot; the
        gaps it closed are kept for the next batch."""
        self.stats.dropped_batches += 1
        for venue, gaps in batch.gaps.items():
            self.batch.gaps.setdefault(venue, []).extend(g for g in gaps if g[2] is not None)
        for venue, rows in list(batch.changes.items()) + list(batch.snapshots.items()):
            for symbol in {r[0] for r in rows}:
                cap = self.books[(venue, symbol)]
                if cap.gap_start is None:
                    cap.gap_start, cap.gap_reason = batch.since, "overflow: the writer fell behind or failed; rows were dropped"
                cap.dirty = True


async def run_parquet_sink(cfg: ParquetSinkConfig, store: Any, *, clock: Callable[[], int] | None = None,
                           task_status: trio.TaskStatus[CaptureTap] = trio.TASK_STATUS_IGNORED) -> None:
    """Capture every book of ``store`` under ``cfg.path`` until cancelled; the last
    rows are written and the run closed on the way out."""
    from ..history.writer import HistoryWriter

    log = named("sink:parquet")
    clock = clock or wall_clock_us()
    started = clock()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started / 1e6)) + "-" + secrets.token_hex(3)
    writer = HistoryWriter(cfg.path, run_id, compression=cfg.compression)
    notes = await trio.to_thread.run_sync(writer.open_run, started)
    for note in notes:
        log.warning("{}", note)
    tap = CaptureTap(store, cfg, clock, started)
    store.tap = tap
    store.sinks["parquet"] = tap.stats
    send, recv = trio.open_memory_channel[Batch](cfg.queue)
    log.info("capturing {} books to {} (run {})", len(tap.books), cfg.path, run_id)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write_batches, recv, writer, tap, log)
        task_status.started(tap)
        try:
            while True:
                deadline = trio.current_time() + cfg.flush_interval
                while trio.current_time() < deadline and tap.batch.rows < cfg.max_rows:
                    await trio.sleep(min(0.1, cfg.flush_interval))
                _hand_over(tap, send, log)
        finally:
            store.tap = None
            with trio.move_on_after(60) as scope:  # clean-up: the last rows, then the run is closed
                scope.shield = True
                await send.send(tap.take())
                await send.aclose()


def _hand_over(tap: CaptureTap, send: trio.MemorySendChannel, log: Any) -> None:
    batch = tap.take()
    try:
        send.send_nowait(batch)
    except trio.WouldBlock:
        tap.lost(batch)
        log.warning("parquet writer behind ({} batches queued): a batch dropped, its books have a gap until their next snapshot",
                    tap.cfg.queue)
        return
    tap.stats.batches += 1


async def _write_batches(recv: trio.MemoryReceiveChannel, writer: Any, tap: CaptureTap, log: Any) -> None:
    try:
        async for batch in recv:
            await _write(writer, batch, tap, log)
    finally:
        with trio.move_on_after(60) as scope:  # clean-up: what is queued, then the run's end
            scope.shield = True
            async for batch in recv:
                await _write(writer, batch, tap, log)
            try:
                await trio.to_thread.run_sync(writer.close_run)
            except OSError as exc:
                log.error("capture run {} not closed: {}", writer.run_id, exc)
            else:
                log.info("capture run {} closed", writer.run_id)


async def _write(writer: Any, batch: Batch, tap: CaptureTap, log: Any) -> None:
    """One batch to disk; a failure (disk full, permissions) is a gap of its books, never the service's end."""
    try:
        await trio.to_thread.run_sync(writer.write, batch)
    except OSError as exc:
        tap.stats.failed_batches += 1
        tap.lost(batch)
        if tap.logged.check("write") is not None:
            log.error("parquet capture cannot write ({}): its books have a gap until their next snapshot", exc)


__all__ = ["Batch", "CaptureStats", "CaptureTap", "run_parquet_sink", "wall_clock_us"]
