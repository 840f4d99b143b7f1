"""Record raw venue traffic, and replay a recording offline through the same
parsers, sequencers and checksums the service uses.

A recording is JSON lines, one record per line (the format of the captures in
``shared/realdata``, plus a few keys)::

    {"ts": 1718000000.1, "venue": "binance_spot", "dir": "connect", "url": "wss://…", "frame": "",
     "conn": 3, "symbols": ["BTCUSDT"], "depth": 1000, "options": {}}
    {"ts": …, "venue": …, "conn": 3, "dir": "tx",   "frame": "<text sent>"}
    {"ts": …, "venue": …, "conn": 3, "dir": "rx",   "frame": "<text received>"}        # or "frame_b64" for binary
    {"ts": …, "venue": …, "conn": 3, "dir": "rest", "url": "https://…", "symbol": "BTCUSDT", "frame": "<body>"}

    {"ts": …, "venue": …, "conn": 3, "dir": "live", "symbol": "BTCUSDT"}               # the book went live
    {"ts": …, "dir": "dropped", "count": 120}                                         # the disk fell behind

Files rotate at ``max_bytes`` (uncompressed) and are gzip-compressed, written by
a worker thread with a sync flush every :data:`FLUSH_EVERY` seconds: a recorder
killed at any moment loses about a second, and every complete line before that
is readable.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, Any

import attrs
import trio

from .errors import AttemptFailure, BadFrame, BookFault, SnapshotUnusable
from .log import named
from .model import Delta, Snapshot
from .sync import SnapshotTooOld, SymbolSync
from .venues import ConnectionSpec, get_venue

_conn_ids = itertools.count(1)
FLUSH_EVERY = 1.0


class Recorder:
    """Appends records to rotating gzip JSON-lines files in ``out_dir``.

    :meth:`frame` only queues a line (it is called from the read loop); the
    :meth:`run` task writes and flushes the queue in a worker thread every
    :data:`FLUSH_EVERY` seconds, so compression and disk never block the feeds.
    The queue is bounded (``max_pending`` bytes): past it, records are dropped,
    counted, and the recording says where (a ``"dir": "dropped"`` line)."""

    def __init__(self, out_dir: str, *, max_bytes: int = 256 * 2**20, compress: bool = True,
                 max_pending: int = 64 * 2**20) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.max_bytes = max_bytes
        self.compress = compress
        self.max_pending = max_pending
        self._fh: IO[str] | None = None
        self._written = 0
        self._part = 0
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._dropping = 0  # records dropped since the last line that says so
        self.dropped = 0
        self.files: list[str] = []

    def _open(self) -> IO[str]:
        self._part += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        suffix = ".jsonl.gz" if self.compress else ".jsonl"
        path = os.path.join(self.out_dir, f"trio-books-{stamp}-{self._part:04d}{suffix}")
        self.files.append(path)
        self._written = 0
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=5) if self.compress else open(path, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self._pending_bytes + len(line) > self.max_pending:
            self._dropping += 1
            self.dropped += 1
            return
        if self._dropping:
            self._mark_dropped()
        self._pending.append(line)
        self._pending_bytes += len(line)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write what is queued, every :data:`FLUSH_EVERY` seconds, until cancelled
        (:meth:`close` writes the rest)."""
        log = named("recorder")
        reported = 0
        task_status.started()
        while True:
            await trio.sleep(FLUSH_EVERY)
            if self._pending or self._dropping:
                await trio.to_thread.run_sync(self._write_lines, self._take())
            if self.dropped > reported:
                log.warning("the disk is behind the feeds: {} records dropped so far (the recording marks where)", self.dropped)
                reported = self.dropped

    def _mark_dropped(self) -> None:
        self._pending.append(json.dumps({"ts": time.time(), "dir": "dropped", "count": self._dropping}) + "\n")
        self._dropping = 0

    def _take(self) -> list[str]:
        if self._dropping:
            self._mark_dropped()
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        return batch

    def _write_lines(self, lines: list[str]) -> None:
        for line in lines:
            if self._fh is None or self._written + len(line) > self.max_bytes:
                self._close_file()
                self._fh = self._open()
            self._fh.write(line)
            self._written += len(line)
        if self._fh is not None:
            self._fh.flush()  # gzip: a sync point, readable however the process ends

    def frame(self, venue: str, conn: int, direction: str, raw: str | bytes, **extra: Any) -> None:
        rec: dict[str, Any] = {"ts": time.time(), "venue": venue, "conn": conn, "dir": direction}
        if isinstance(raw, (bytes, bytearray)):
            try:
                rec["frame"] = raw.decode("utf-8") if direction == "rest" else None
            except UnicodeDecodeError:
                rec["frame"] = None
            if rec["frame"] is None:
                del rec["frame"]
                rec["frame_b64"] = base64.b64encode(raw).decode()
        else:
            rec["frame"] = raw
        rec.update(extra)
        self.write(rec)

    def new_connection(self, venue: str, url: str, spec: ConnectionSpec) -> int:
        conn = next(_conn_ids)
        self.frame(venue, conn, "connect", "", url=url, symbols=list(spec.symbols), depth=spec.depth, options=dict(spec.options))
        return conn

    def live(self, venue: str, conn: int, symbol: str) -> None:
        """The book went live on this connection: replay must get it live too."""
        self.write({"ts": time.time(), "venue": venue, "conn": conn, "dir": "live", "symbol": symbol})

    def flush(self) -> None:
        """Write and sync what is queued now, blocking (the end of a run; tests)."""
        if self._pending or self._dropping:
            self._write_lines(self._take())

    def close(self) -> None:
        self.flush()
        self._close_file()

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_records(paths: Iterable[str], damage: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every record of ``paths``, in order. A line that is not a JSON object is
    skipped, and a file that ends early (a recorder killed mid-write) yields the
    lines it holds; both are noted in ``damage`` (a list the caller passes)."""
    notes = damage if damage is not None else []
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        n = 0
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            try:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        rec = None
                    if type(rec) is dict and rec.get("dir") == "dropped":
                        notes.append(f"{path}:{n}: the recorder dropped {rec.get('count')} records here (the disk fell behind)")
                    if type(rec) is not dict:
                        if line.endswith("\n"):
                            notes.append(f"{path}:{n}: not a JSON object (skipped)")
                        else:
                            notes.append(f"{path}:{n}: the file ends inside a line")
                        continue
                    yield rec
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                notes.append(f"{path}: ends early after line {n} ({exc})")


def raw_of(rec: dict[str, Any]) -> str | bytes:
    if "frame_b64" in rec:
        return base64.b64decode(rec["frame_b64"])
    return rec.get("frame", "")


@attrs.define
class BookResult:
    venue: str
    symbol: str
    applied: int = 0
    skipped: int = 0
    checksums_ok: int = 0
    snapshots: int = 0
    crossed: int = 0
    failures: Counter = attrs.field(factory=Counter)
    live: bool = False
    went_live: bool = False
    best_bid: tuple[str, str] | None = None
    best_ask: tuple[str, str] | None = None


class _Conn:
    def __init__(self, rec: dict[str, Any]) -> None:
        self.venue = get_venue(rec["venue"])
        self.spec = ConnectionSpec("", "", tuple(rec["symbols"]), int(rec["depth"]), rec.get("options") or {})
        self.faulted: set[str] = set()  # failed, and not live again since: later faults are its consequences
        self.reset()

    def reset(self) -> None:
        self.proto = self.venue.connect(self.spec)
        self.syncs = {s: self.new_sync(s) for s in self.spec.symbols}

    def new_sync(self, symbol: str) -> SymbolSync:
        return SymbolSync(symbol, self.spec.depth, self.proto.new_sequencer(symbol), self.proto.verify, self.proto.rest_snapshots)


def replay(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], BookResult]:
    """Rebuild every recorded book offline; count checks passed and failed.

    A failed check is counted under its reason and repaired as the service
    would: a book fault starts that book over (the recording then holds its
    resync), a connection fault starts every book of the connection over.
    """
    conns: dict[Any, _Conn] = {}
    results: dict[tuple[str, str], BookResult] = {}
    live_in_recording: set[tuple[str, str]] = set()

    def result(venue: str, symbol: str) -> BookResult:
        key = (venue, symbol)
        if key not in results:
            results[key] = BookResult(venue, symbol)
        return results[key]

    def fail(conn: _Conn, symbols: Iterable[str], exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, AttemptFailure) else "error"
        for s in symbols:
            if s in conn.faulted:  # one gap is one failure, not every event after it
                continue
            conn.faulted.add(s)
            r = result(conn.venue.id, s)
            r.failures[reason] += 1
            if reason == "crossed":
                r.crossed += 1
        if isinstance(exc, BookFault):
            conn.syncs[exc.symbol] = conn.new_sync(exc.symbol)
        else:
            conn.reset()

    def seen_live(conn: _Conn, r: BookResult, sync: SymbolSync) -> None:
        if sync.live:
            r.went_live = True
            conn.faulted.discard(r.symbol)

    for rec in records:
        key = (rec.get("venue"), rec.get("conn"))
        direction = rec.get("dir")
        if direction == "connect":
            conns[key] = _Conn(rec)
            for s in rec["symbols"]:
                result(rec["venue"], s)
            continue
        conn = conns.get(key)
        if conn is None:
            continue
        if direction == "live":
            live_in_recording.add((conn.venue.id, rec.get("symbol")))
            continue
        if direction == "tx":
            sent = getattr(conn.proto, "sent", None)
            if sent is not None and isinstance(rec.get("frame"), str):
                sent(rec["frame"])
            continue
        if direction == "rest":
            symbol = rec.get("symbol")
            sync = conn.syncs.get(symbol)
            if sync is None:
                continue
            try:
                snap = conn.proto.parse_snapshot(symbol, raw_of(rec) if isinstance(raw_of(rec), bytes) else raw_of(rec).encode())
                sync.on_snapshot(snap)
                r = result(conn.venue.id, symbol)
                r.snapshots += 1
                seen_live(conn, r, sync)
            except SnapshotTooOld:
                continue
            except Exception as exc:  # noqa: BLE001 - counted and resynced
                fail(conn, [symbol], exc if isinstance(exc, BookFault) else SnapshotUnusable(symbol, str(exc)))
            continue
        if direction != "rx":
            continue
        try:
            items = conn.proto.parse(raw_of(rec))
        except BookFault as exc:
            items = [exc]
        except Exception as exc:  # noqa: BLE001
            fail(conn, conn.spec.symbols, exc if isinstance(exc, AttemptFailure) else BadFrame(str(exc)))
            continue
        for item in items:
            if isinstance(item, BookFault):
                if item.symbol in conn.syncs:
                    fail(conn, [item.symbol], item)
                continue
            if type(item) not in (Delta, Snapshot):
                continue
            sync = conn.syncs.get(item.symbol)
            if sync is None:
                continue
            r = result(conn.venue.id, item.symbol)
            try:
                if type(item) is Snapshot:
                    sync.on_snapshot(item)
                    r.snapshots += 1
                    if item.checksum is not None:
                        r.checksums_ok += 1
                elif sync.on_delta(item):
                    r.applied += 1
                    if item.checksum is not None:
                        r.checksums_ok += 1
                elif sync.live:
                    r.skipped += 1
                seen_live(conn, r, sync)
            except SnapshotTooOld:
                continue
            except BookFault as exc:
                fail(conn, [item.symbol], exc)
            except Exception as exc:  # noqa: BLE001
                fail(conn, conn.spec.symbols, exc if isinstance(exc, AttemptFailure) else BadFrame(str(exc)))
                break
    for conn in conns.values():
        for s, sync in conn.syncs.items():
            r = result(conn.venue.id, s)
            r.live = sync.live
            r.best_bid, r.best_ask = sync.book.best_bid(), sync.book.best_ask()
    for key in live_in_recording:  # live when recorded, never live here: the replay cannot rebuild it
        if key in results and not results[key].went_live:
            results[key].failures["never_live"] += 1
    return results


def format_results(results: dict[tuple[str, str], BookResult]) -> str:
    lines = []
    total_fail = 0
    for (venue, symbol), r in sorted(results.items()):
        fails = ", ".join(f"{k}={v}" for k, v in sorted(r.failures.items())) or "none"
        total_fail += sum(r.failures.values())
        top = f"bid {r.best_bid[0]} ask {r.best_ask[0]}" if r.best_bid and r.best_ask else "empty"
        lines.append(f"{venue} {symbol}: {'live' if r.live else 'not live'}; snapshots {r.snapshots}, applied {r.applied}, "
                     f"stale skipped {r.skipped}, checksums ok {r.checksums_ok}; failed checks: {fails} "
                     f"(resyncs needed {sum(r.failures.values())}, crossed {r.crossed}); {top}")
    lines.append(f"{len(results)} books, {total_fail} failed checks")
    return "\n".join(lines)
