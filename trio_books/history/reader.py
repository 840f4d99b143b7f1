"""Reading a capture: books at any instant, changes as Arrow record batches.

A book at ``t`` starts from the book's latest snapshot at or before ``t`` in the
capture run that covers ``t`` and applies its changes up to ``t`` (received at or
before it), in their order. ``t`` inside a gap window of the book (or of its
whole venue: a capture that was down), or outside every run's range, is refused
with :class:`InGap` / :class:`NotCaptured`.
"""

from __future__ import annotations

import heapq
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..book import OrderBook
from ..model import Level
from .layout import RUNS, manifests, read_json
from .rebuild import levels, load_snapshot

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class HistoryError(Exception):
    """A capture cannot answer: see the message (one line)."""


class NotCaptured(HistoryError):
    """The instant is outside every capture run of the venue, or the book was never captured."""


class InGap(HistoryError):
    """The instant falls inside a gap window: the book was not live (or the capture was down)."""

    def __init__(self, message: str, gap: "Gap") -> None:
        super().__init__(message)
        self.gap = gap


def to_us(t: Any) -> int:
    """An instant (aware or UTC ``datetime``, ISO 8601 text, or epoch seconds) in µs since the epoch."""
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.strip())
        except ValueError:
            raise HistoryError(f"not an ISO 8601 time: {t!r} (e.g. 2026-12-06T13:45:00.250Z)") from None
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return (t - EPOCH) // timedelta(microseconds=1)
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return round(t * 1_000_000)
    raise HistoryError(f"not a time: {t!r}")


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@attrs.frozen
class Gap:
    """An interval in which a book (``symbol`` ``"*"``: every book of the venue) was not captured live."""

    venue: str
    symbol: str
    start_us: int
    end_us: int | None  # None: still open when the capture last wrote
    reason: str
    run: str = ""  # the capture run that wrote it

    def contains(self, t: int, until: int) -> bool:
        return self.start_us <= t < (self.end_us if self.end_us is not None else until + 1)

    def to_json(self) -> dict[str, Any]:
        end = None if self.end_us is None else to_datetime(self.end_us).isoformat()
        return {"venue": self.venue, "symbol": self.symbol, "start": to_datetime(self.start_us).isoformat(), "end": end,
                "reason": self.reason}


@attrs.frozen
class PastBook:
    """A book as it was served at ``at``: the top ``depth`` levels of the proven range."""

    venue: str
    symbol: str
    at: datetime
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    update_id: int | None
    exchange_ts: datetime | None
    received_ts: datetime  # when the last change (or snapshot) before ``at`` was applied
    complete_depth: tuple[int, int]
    proven_bound: tuple[str | None, str | None]

    def to_json(self) -> dict[str, Any]:
        return {"venue": self.venue, "symbol": self.symbol, "at": self.at.isoformat(),
                "bids": [list(x) for x in self.bids], "asks": [list(x) for x in self.asks], "update_id": self.update_id,
                "exchange_ts": None if self.exchange_ts is None else self.exchange_ts.isoformat(),
                "received_ts": self.received_ts.isoformat(),
                "complete_depth": {"bids": self.complete_depth[0], "asks": self.complete_depth[1]},
                "proven_bound": {"bids": self.proven_bound[0], "asks": self.proven_bound[1]}}


@attrs.define
class _File:
    path: Path
    kind: str
    run: str
    first_us: int
    last_us: int


@attrs.define
class _Cursor:
    """One book being replayed forward through one run's rows."""

    run: str
    book: OrderBook
    events: Iterator[tuple]
    ts: int
    update_id: int | None
    exchange_us: int | None
    pending: tuple | None = None

    def advance(self, t: int) -> None:
        while True:
            event = self.pending if self.pending is not None else next(self.events, None)
            if event is None or event[1] > t:
                self.pending = event
                return
            self.pending = None
            seq, self.ts, kind, uid, exch, a, b = event
            if kind == "s":
                self.book = load_snapshot(*a)
            else:
                self.book.apply(a, b)
            self.update_id = uid if uid is not None or kind == "s" else self.update_id
            self.exchange_us = exch if exch is not None else self.exchange_us


class History:
    """A capture directory, opened for reading (see :func:`trio_books.history.open`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / RUNS).is_dir():
            raise HistoryError(f"{self.root}: not a trio-books capture directory (no {RUNS}/)")
        self.runs: dict[str, tuple[int, int, frozenset[str]]] = {}  # run -> (started, covered until, venues)
        for path in sorted((self.root / RUNS).glob("*.json")):
            run = self._read(path)
            self.runs[run["run"]] = (run["started"], run["ended"] or run["flushed_until"], frozenset(run["venues"]))
        self.files: dict[str, list[_File]] = defaultdict(list)
        self._gaps: dict[str, list[Gap]] = defaultdict(list)
        for path in manifests(self.root):
            m = self._read(path)
            for f in m["files"]:
                self.files[m["venue"]].append(_File(path.parent / f["file"], f["kind"], f["run"], f["first_us"], f["last_us"]))
            for g in m["gaps"]:
                self._gaps[m["venue"]].append(Gap(m["venue"], g["symbol"], g["start_us"], g["end_us"], g["reason"], g.get("run", "")))
        for files in self.files.values():
            files.sort(key=lambda f: (f.first_us, f.path.name))

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            return read_json(path)
        except ValueError as exc:
            raise HistoryError(str(exc)) from None

    # --- what is there ---------------------------------------------------------------------
    def venues(self) -> list[str]:
        return sorted({v for _, _, venues in self.runs.values() for v in venues})

    def coverage(self, venue: str) -> list[tuple[datetime, datetime]]:
        """The intervals some capture run covered ``venue`` (its gaps are listed apart, see :meth:`gaps`)."""
        return sorted((to_datetime(s), to_datetime(u)) for s, u, venues in self.runs.values() if venue in venues)

    def gaps(self, venue: str, symbol: str | None = None) -> list[Gap]:
        """Gap windows of ``venue`` (of one book and of the whole venue, with ``symbol``)."""
        return sorted((g for g in self._gaps.get(venue, []) if symbol is None or g.symbol in (symbol, "*")),
                      key=lambda g: (g.start_us, g.symbol))

    def _run_at(self, venue: str, symbol: str, t: int) -> str:
        for gap in self.gaps(venue, symbol):
            if gap.contains(t, self.runs.get(gap.run, (0, t, None))[1]):
                end = "still open at the end of the capture" if gap.end_us is None else to_datetime(gap.end_us).isoformat()
                raise InGap(f"{venue} {symbol} at {to_datetime(t).isoformat()}: inside a gap from "
                            f"{to_datetime(gap.start_us).isoformat()} to {end} ({gap.reason})", gap)
        runs = sorted((s, u, r) for r, (s, u, venues) in self.runs.items() if venue in venues)
        for started, until, run in runs:
            if started <= t <= until:
                return run
        spans = ", ".join(f"{to_datetime(s).isoformat()} to {to_datetime(u).isoformat()}" for s, u, _ in runs)
        raise NotCaptured(f"{venue} {symbol} at {to_datetime(t).isoformat()}: outside the captured range "
                          f"({spans or 'the venue was never captured'})")

    # --- books ------------------------------------------------------------------------------
    def book_at(self, venue: str, symbol: str, t: Any, depth: int | None = None) -> PastBook:
        """The book as it was served at ``t`` (see the module doc)."""
        at = to_us(t)
        cursor = self._seek(venue, symbol, self._run_at(venue, symbol, at), at)
        cursor.advance(at)
        return self._view(venue, symbol, cursor, at, depth)

    def iter_books(self, venue: str, symbol: str, start: Any, end: Any, every: Any, depth: int | None = None) -> Iterator[PastBook]:
        """The book at ``start``, ``start + every``, … up to ``end``, replayed forward
        (one pass over the rows). Instants inside a gap or outside the capture are
        skipped (see :meth:`gaps`)."""
        t, stop = to_us(start), to_us(end)
        step = round(every.total_seconds() * 1e6) if isinstance(every, timedelta) else round(float(every) * 1e6)
        if step <= 0:
            raise HistoryError(f"every must be a positive interval, got {every!r}")
        cursor: _Cursor | None = None
        while t <= stop:
            try:
                run = self._run_at(venue, symbol, t)
            except HistoryError:
                cursor = None
            else:
                if cursor is None or cursor.run != run:
                    cursor = self._seek(venue, symbol, run, t)
                cursor.advance(t)
                yield self._view(venue, symbol, cursor, t, depth)
            t += step

    def _view(self, venue: str, symbol: str, c: _Cursor, at: int, depth: int | None) -> PastBook:
        book = c.book
        return PastBook(venue, symbol, to_datetime(at), tuple(book.top_bids(depth)), tuple(book.top_asks(depth)),
                        c.update_id, None if c.exchange_us is None else to_datetime(c.exchange_us), to_datetime(c.ts),
                        book.complete_depth(), book.proven_bounds())

    def _seek(self, venue: str, symbol: str, run: str, t: int) -> _Cursor:
        """A cursor at the book's latest snapshot at or before ``t`` in ``run``."""
        mine = [f for f in self.files.get(venue, []) if f.run == run]
        for f in reversed([f for f in mine if f.kind == "snapshots" and f.first_us <= t]):
            table = _rows(f, symbol)
            table = table.filter(pc.less_equal(table["received_ts"].cast(pa.int64()), t))
            if table.num_rows:
                row = table.slice(table.num_rows - 1).to_pylist()[0]
                seq, ts = row["seq"], _us(row["received_ts"])
                later = [x for x in mine if x.last_us >= ts]
                events = heapq.merge(_changes(later, symbol, seq, ts), _snapshots(later, symbol, seq, ts), key=lambda e: e[0])
                return _Cursor(run, load_snapshot(*_snapshot_args(row)), events, ts, row["update_id"],
                               _us(row["exchange_ts"]))
        raise NotCaptured(f"{venue} {symbol}: no snapshot of this book at or before {to_datetime(t).isoformat()} "
                          "(is the symbol spelled as the venue does?)")

    # --- raw rows ---------------------------------------------------------------------------
    def changes(self, venue: str, symbol: str | None = None, start: Any = None, end: Any = None) -> Iterator[pa.RecordBatch]:
        """The captured changes of ``venue`` (of one book with ``symbol``) received in
        ``[start, end]``, as Arrow record batches in capture order."""
        lo = -(2**63) if start is None else to_us(start)
        hi = 2**63 - 1 if end is None else to_us(end)
        for f in self.files.get(venue, []):
            if f.kind != "changes" or f.last_us < lo or f.first_us > hi:
                continue
            table = _rows(f, symbol)
            ts = table["received_ts"].cast(pa.int64())
            table = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less_equal(ts, hi)))
            yield from table.to_batches()


def _us(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // timedelta(microseconds=1)


def _rows(f: _File, symbol: str | None, since: int | None = None) -> pa.Table:
    """One file's rows (of ``symbol``, received at or after ``since``): row groups
    outside them are skipped by their statistics."""
    filters = [] if symbol is None else [("symbol", "==", symbol)]
    if since is not None and since > f.first_us:
        filters.append(("received_ts", ">=", to_datetime(since)))
    try:
        return pq.read_table(f.path, filters=filters or None)
    except (OSError, pa.ArrowException) as exc:
        raise HistoryError(f"{f.path}: unreadable ({exc})") from None


def _snapshot_args(row: dict) -> tuple:
    return row["depth"], row["tracked"], levels(row["bids"]), levels(row["asks"]), row["bid_bound"], row["ask_bound"]


def _changes(files: list[_File], symbol: str, after: int, since: int) -> Iterator[tuple]:
    """``(seq, ts, "c", update_id, exchange_us, bids, asks)``, one per change after
    row ``after`` (received at or after ``since``), in order."""
    for f in files:
        if f.kind != "changes":
            continue
        table = _rows(f, symbol, since)
        table = table.filter(pc.greater(table["seq"], after))
        cols = [table[name].to_pylist() for name in ("seq", "side", "price", "qty", "update_id")]
        recv, exch = table["received_ts"].cast(pa.int64()).to_pylist(), table["exchange_ts"].cast(pa.int64()).to_pylist()
        i, n = 0, table.num_rows
        while i < n:
            seq, bids, asks = cols[0][i], [], []
            j = i
            while j < n and cols[0][j] == seq:
                (bids if cols[1][j] == "bid" else asks).append((cols[2][j], cols[3][j]))
                j += 1
            yield seq, recv[i], "c", cols[4][i], exch[i], bids, asks
            i = j


def _snapshots(files: list[_File], symbol: str, after: int, since: int) -> Iterator[tuple]:
    for f in files:
        if f.kind != "snapshots":
            continue
        table = _rows(f, symbol, since)
        for row in table.filter(pc.greater(table["seq"], after)).to_pylist():
            yield row["seq"], _us(row["received_ts"]), "s", row["update_id"], _us(row["exchange_ts"]), _snapshot_args(row), None


__all__ = ["Gap", "History", "HistoryError", "InGap", "NotCaptured", "PastBook", "to_us"]
