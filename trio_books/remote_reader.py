"""The task that follows published books in Redis for :func:`trio_books.remote.open_remote_books`:
discovery from ``books:index``, each book from its latest snapshot, then its ``updates`` stream
(layout: :mod:`trio_books.sinks.layout`)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any, Final

import attrs
import orjson
import trio

from .backoff import backoff_delay
from .book import OrderBook
from .errors import BadFrame
from .log import RateLimiter, named
from .model import BookState
from .resp import RedisConnection, RedisError, entries, pairs
from .sinks.layout import INDEX_KEY, publisher_key, redacted, stream_keys
from .sinks.redis import SOCKET_TIMEOUT
from .store import BookStore, LatencyHistogram

BLOCK_MS: Final = 500
READ_COUNT: Final = 1000
"""Entries per stream per XREAD at most."""
DISCOVER_INTERVAL: Final = 1.0
APPLY_SLICE: Final = 200
"""Entries applied between two checkpoints."""
BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 5.0


@attrs.define
class RemoteStats:
    """Counters of the remote reader (``books.remote_statistics()``)."""

    url: str
    connected: bool = False
    books: int = 0
    reads: int = 0  # XREAD calls that returned entries
    entries: int = 0  # stream entries processed
    snapshots: int = 0  # snapshots applied (bootstrap and stream)
    updates: int = 0  # updates applied
    gaps: int = 0  # skipped sequence numbers (each made the book re-read its latest snapshot)
    publisher_changes: int = 0  # a book's publisher restarted
    publishers_lost: int = 0  # a publisher's heartbeat expired
    foreign: int = 0  # entries skipped because another publisher than the index names wrote them
    bad_messages: int = 0
    errors: int = 0  # failed Redis operations
    outages: int = 0
    last_error: str | None = None
    apply_seconds: float = 0.0  # time spent applying entries on the Trio thread
    apply_max_s: float = 0.0  # longest stretch the reader held the Trio thread
    latency: LatencyHistogram = attrs.field(factory=LatencyHistogram)  # published (ts) -> applied here
    recent: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=4096))


@attrs.define(eq=False)
class _Follow:
    venue: str
    symbol: str
    updates_key: str
    snapshots_key: str
    publisher: str | None = None  # from the index (whose heartbeat decides liveness)
    last_id: str = "0-0"
    epoch: str | None = None  # publisher of the last applied message
    seq: int = 0
    synced: bool = False
    need_bootstrap: bool = True
    orphaned: bool = False
    gap_at: str | None = None  # the entry that showed a gap (a snapshot older than it cannot help)
    book: OrderBook | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, n = value.partition("-")
    return int(ms), int(n or 0)


class RemoteReader:
    """The one task that reads Redis for a :class:`RemoteBooks`, on its own connection."""

    def __init__(self, url: str, store: BookStore, books: Iterable[tuple[str, str]] | None, *,
                 block_ms: int = BLOCK_MS, discover_interval: float = DISCOVER_INTERVAL) -> None:
        self.url = url
        self.store = store
        self.fixed = books is not None
        self.block_ms = block_ms
        self.discover_interval = discover_interval
        self.stats = RemoteStats(url=redacted(url))
        self.follows: dict[str, _Follow] = {}  # updates key -> follow
        self.discovered = trio.Event()  # set (and replaced) whenever books are added
        self._conn: RedisConnection | None = None
        self._up: bool | None = None
        self._failures = 0
        self._next_discover = 0.0
        self._limiter = RateLimiter(window=60.0)
        self._log = named("remote")
        for venue, symbol in books or ():
            self._add(venue, symbol)

    # --- books ------------------------------------------------------------------------
    def _add(self, venue: str, symbol: str) -> _Follow:
        ukey, skey = stream_keys(venue, symbol)
        f = self.follows.get(ukey)
        if f is None:
            f = self.follows[ukey] = _Follow(venue, symbol, ukey, skey)
            self.store.add(venue, symbol)
            self.stats.books = len(self.follows)
            ev, self.discovered = self.discovered, trio.Event()
            ev.set()
        return f

    def _set_state(self, f: _Follow, state: BookState) -> None:
        self.store.set_state(f.venue, [f.symbol], state)

    def _lose(self, f: _Follow, state: BookState) -> None:
        """The book can no longer be trusted: not live until rebuilt from a snapshot."""
        f.synced = False
        self._set_state(f, state)

    # --- applying messages (Trio thread) -------------------------------------------------------
    def _apply_snapshot(self, f: _Follow, fields: dict[str, str]) -> None:
        state = BookState(fields["state"])
        publisher, seq = fields["publisher"], int(fields["seq"])
        if state is BookState.LIVE:
            book = OrderBook()
            book.apply_snapshot(orjson.loads(fields["bids"]), orjson.loads(fields["asks"]))
        else:
            book = None
        if f.epoch is not None and publisher != f.epoch:
            self.stats.publisher_changes += 1
        f.epoch, f.seq, f.synced, f.book = publisher, seq, True, book
        self.stats.snapshots += 1
        entry = self.store.entry(f.venue, f.symbol)
        if book is not None:
            self.store.publish(f.venue, f.symbol, book)
        self._set_state(f, state)
        self._touched(entry, fields)

    def _apply_update(self, f: _Follow, fields: dict[str, str]) -> None:
        assert f.book is not None
        f.book.apply(orjson.loads(fields["bids"]), orjson.loads(fields["asks"]))
        f.seq = int(fields["seq"])
        self.stats.updates += 1
        self._touched(self.store.entry(f.venue, f.symbol), fields)

    def _touched(self, entry, fields: dict[str, str]) -> None:
        uid = fields.get("update_id")
        ets = fields.get("exchange_ts")
        self.store.touched(entry, int(uid) if uid is not None else None, float(ets) if ets is not None else None)
        rts = fields.get("received_ts")
        if rts is not None:
            entry.received_ts = float(rts)
        now = time.time()
        ts = fields.get("ts")
        if ts is not None:
            lat = now - float(ts)
            self.stats.latency.observe(lat)
            self.stats.recent.append(lat)
        if ets is not None:
            self.store.venues[entry.venue].latency.observe(now - float(ets))

    def _on_entry(self, f: _Follow, fields: dict[str, str]) -> bool:
        """Apply one stream entry; False when the book must re-read its latest snapshot."""
        kind = fields.get("type")
        publisher = fields.get("publisher")
        try:
            seq = int(fields["seq"])
        except (KeyError, ValueError):
            self.stats.bad_messages += 1
            return True  # nothing we can place: skip it (a following gap will resync)
        if f.publisher is not None and publisher != f.publisher:
            self.stats.foreign += 1  # not the book's publisher (by the index): an old or a second instance
            return True
        if f.synced and publisher == f.epoch and seq <= f.seq:
            return True  # already applied (read again after a bootstrap)
        if kind == "snapshot":
            if f.synced and publisher == f.epoch and seq != f.seq + 1:
                self.stats.gaps += 1
                self.store.venues[f.venue].failures["gap"] += 1
            self._apply_snapshot(f, fields)
            return True
        if kind != "update":
            self.stats.bad_messages += 1
            return True
        if not f.synced:
            return True  # waiting for a snapshot (none was stored yet)
        if publisher != f.epoch or seq != f.seq + 1:
            self.stats.gaps += 1
            self.store.venues[f.venue].failures["gap"] += 1
            return False
        self._apply_update(f, fields)
        return True

    def _applied(self, since: float) -> None:
        took = time.perf_counter() - since
        self.stats.apply_seconds += took
        if took > self.stats.apply_max_s:
            self.stats.apply_max_s = took

    async def _process(self, response: Any) -> None:
        if not response:
            return
        self.stats.reads += 1
        now = trio.current_time()
        done = 0
        started = time.perf_counter()
        for stream, stream_entries in response:
            f = self.follows.get(_text(stream))
            if f is None or f.orphaned:
                continue
            vstats = self.store.venues[f.venue]
            for entry_id, raw in stream_entries:
                if done and done % APPLY_SLICE == 0:  # keep the app's Trio thread responsive
                    self._applied(started)
                    await trio.lowlevel.checkpoint()
                    started = time.perf_counter()
                done += 1
                self.stats.entries += 1
                fields = {_text(k): _text(v) for k, v in raw.items()}
                vstats.frames += 1
                vstats.bytes += sum(len(v) for v in fields.values())
                vstats.last_message_at = now
                try:
                    ok = self._on_entry(f, fields)
                except (BadFrame, KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                    self.stats.bad_messages += 1
                    vstats.failures["bad_frame"] += 1
                    vstats.last_error = f"{f.symbol}: bad message {_text(entry_id)}: {exc}"
                    ok = False
                if not ok:
                    f.gap_at = _text(entry_id)
                    f.need_bootstrap = True
                    self._lose(f, BookState.SYNCING)
                    break  # the rest of this stream is read again after the snapshot
                f.last_id = _text(entry_id)
        self._applied(started)

    # --- Redis calls ---------------------------------------------------------------------------
    async def _call(self, commands: list[tuple[Any, ...]], timeout: float = SOCKET_TIMEOUT) -> list[Any]:
        if self._conn is None:
            self._conn = await RedisConnection.open(self.url)
        try:
            return await self._conn.execute(commands, timeout=timeout)
        except RedisError:
            if self._conn.broken:
                conn, self._conn = self._conn, None
                await conn.aclose()
            raise

    async def _read_index(self) -> tuple[dict[str, str], dict[str, bool]]:
        (flat,) = await self._call([("HGETALL", INDEX_KEY)])
        index = pairs(flat)
        publishers = set()
        for value in index.values():
            try:
                publishers.add(orjson.loads(value)["publisher"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass
        for f in self.follows.values():
            if f.publisher:
                publishers.add(f.publisher)
        alive: dict[str, bool] = {}
        if publishers:
            names = sorted(publishers)
            exists = await self._call([("EXISTS", publisher_key(p)) for p in names])
            alive = {p: bool(n) for p, n in zip(names, exists)}
        return index, alive

    async def _latest_snapshots(self, keys: list[str]) -> list[list[tuple[str, dict[str, Any]]]]:
        replies = await self._call([("XREVRANGE", key, "+", "-", "COUNT", 1) for key in keys])
        return [entries(reply) for reply in replies]

    async def _read(self, streams: dict[str, str]) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
        command = ("XREAD", "COUNT", READ_COUNT, "BLOCK", self.block_ms, "STREAMS", *streams, *streams.values())
        (reply,) = await self._call([command], timeout=self.block_ms / 1000 + SOCKET_TIMEOUT)
        return [(stream, entries(items)) for stream, items in reply or ()]

    # --- the task --------------------------------------------------------------------------
    async def _discover(self) -> None:
        index, alive = await self._read_index()
        wanted = None if not self.fixed else set(self.follows)
        for raw in index.values():
            try:
                info = orjson.loads(raw)
                venue, symbol, publisher = info["venue"], info["symbol"], info["publisher"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.stats.bad_messages += 1
                continue
            ukey = stream_keys(venue, symbol)[0]
            if wanted is not None and ukey not in wanted:
                continue
            f = self._add(venue, symbol)
            if f.publisher != publisher:
                if f.publisher is not None:  # another instance publishes the book now: start from its snapshot
                    f.need_bootstrap = True
                f.publisher = publisher
        for f in self.follows.values():
            if f.publisher is None:
                continue  # not published yet
            if not alive.get(f.publisher, False):
                if not f.orphaned:
                    f.orphaned = True
                    self.stats.publishers_lost += 1
                    self.store.venues[f.venue].last_error = f"{f.symbol}: publisher {f.publisher} is gone (heartbeat expired)"
                    self._lose(f, BookState.STALE)
            elif f.orphaned:
                f.orphaned = False
                f.need_bootstrap = True

    async def _bootstrap(self, follows: list[_Follow]) -> None:
        results = await self._latest_snapshots([f.snapshots_key for f in follows])
        for f, result in zip(follows, results):
            f.need_bootstrap = False
            gap_at, f.gap_at = f.gap_at, None
            if not result:  # nothing stored yet: the first snapshot in updates starts the book
                f.last_id, f.synced = gap_at or "0-0", False
                continue
            entry_id, raw = result[0]
            fields = {_text(k): _text(v) for k, v in raw.items()}
            try:
                if f.publisher is not None and fields.get("publisher") != f.publisher:
                    # the book's publisher has not stored a snapshot yet: its first message,
                    # after this one in the stream, is one
                    f.last_id, f.synced = fields["uid"], False
                    continue
                if gap_at is not None and _stream_id(fields["uid"]) < _stream_id(gap_at):
                    # the hole is in the stream itself, after the latest snapshot: skip past it
                    # and wait for the next snapshot in the stream (the sink sends one soon)
                    f.last_id, f.synced = gap_at, False
                    continue
                self._apply_snapshot(f, fields)
                f.last_id = fields["uid"]
            except (BadFrame, KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                self.stats.bad_messages += 1
                self.store.venues[f.venue].failures["bad_frame"] += 1
                self.store.venues[f.venue].last_error = f"{f.symbol}: bad snapshot {_text(entry_id)}: {exc}"
                f.synced = False  # keep reading where we were: the next good snapshot starts the book

    def _down(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._failures += 1
        msg = f"{type(exc).__name__}: {str(exc)[:200]}"
        self.stats.last_error = msg
        self.stats.connected = False
        if self._up is not False:
            self._up = False
            self.stats.outages += 1
            for vstats in self.store.venues.values():
                vstats.failures["close"] += 1
                vstats.consecutive_failures += 1
                vstats.connected = 0
                vstats.last_error = f"redis: {msg}"
        for f in self.follows.values():
            f.need_bootstrap = True
            self._lose(f, BookState.STALE)
        repeats = self._limiter.check("down")
        if repeats is not None:
            self._log.warning("Redis {} unreachable, retrying with backoff: {}", self.stats.url, msg)

    async def run(self, discover_timeout: float, task_status=trio.TASK_STATUS_IGNORED) -> None:
        deadline = trio.current_time() + discover_timeout
        started = False
        try:
            while True:
                try:
                    if trio.current_time() >= self._next_discover or self._up is not True:
                        await self._discover()
                        self._next_discover = trio.current_time() + self.discover_interval
                        if self._up is not True:
                            if self._up is False:
                                for vstats in self.store.venues.values():
                                    vstats.reconnects += 1
                                    vstats.attempts += 1
                            for vstats in self.store.venues.values():
                                vstats.connected = 1
                                vstats.consecutive_failures = 0
                            self._up, self._failures = True, 0
                            self.stats.connected = True
                    if not started:
                        started = True
                        task_status.started()
                    boot = [f for f in self.follows.values() if f.need_bootstrap and not f.orphaned and f.publisher]
                    if boot:
                        await self._bootstrap(boot)
                    streams = {f.updates_key: f.last_id for f in self.follows.values()
                               if not f.orphaned and f.publisher and not f.need_bootstrap}
                    if not streams:
                        await trio.sleep(max(0.0, self._next_discover - trio.current_time()))
                        continue
                    response = await self._read(streams)
                    await self._process(response)
                except RedisError as exc:
                    self._down(exc)
                    if not started and trio.current_time() >= deadline:
                        started = True
                        task_status.started()
                    await trio.sleep(backoff_delay(self._failures, base=BACKOFF_BASE, cap=BACKOFF_CAP))
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.aclose()
