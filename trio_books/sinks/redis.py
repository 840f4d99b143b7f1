"""Redis Streams sink: every book of this instance, published to Redis.

Layout: :mod:`trio_books.sinks.layout`.

Publishing never blocks the feeds. One watcher task per book marks the book pending when it
changes (conflated: a book is pending once, however often it changed); one publisher task
takes the pending books, encodes each as the difference between what it last published and
the book now (latest state wins, nothing is lost: the difference is exact), and writes the
batch over its own Trio connection (:mod:`trio_books.resp`, no worker thread) as one
pipeline of two commands: one ``EVAL`` of a small Lua script that does every
``XADD ... MAXLEN ~`` of the batch (so a batch is written whole, with one reply) and the
heartbeat ``SET``. While a batch is in flight, changes
simply accumulate. A snapshot is published instead of an update when the book
(re)goes live or changes state, after ``snapshot_every`` updates, when the difference is larger
than the book, for a book that overflowed the bounded pending queue (``queue``), and for every
book after Redis failed (an outage or any error): all are counted in :class:`RedisSinkStats`,
kept at ``store.sinks["redis"]``. Redis failures are retried with backoff; the books keep running.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

import attrs
import orjson
import trio

from ..backoff import backoff_delay
from ..config import RedisSinkConfig
from ..log import RateLimiter, named
from ..model import BookState, Level
from ..resp import RedisConnection, RedisConnectionError, RedisError, pack
from ..store import BookEntry, BookStore
from .layout import (
    INDEX_KEY,
    SNAPSHOTS_KEPT,
    book_key,
    diff_side,
    publisher_key,
    redacted,
    stream_keys,
)
from .redis_stats import RedisSinkStats, sink_metric_families

HEARTBEAT_INTERVAL: Final = 1.0
HEARTBEAT_TTL_MS: Final = 5000
BATCH_BOOKS: Final = 512
"""Books encoded into one pipeline at most."""
ENCODE_SLICE: Final = 64
"""Books encoded between two checkpoints (keeps the Trio thread responsive)."""
BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 5.0
SOCKET_TIMEOUT: Final = 5.0

# One batch in one script: KEYS are (updates, snapshots) per message; ARGV[1] is the updates
# MAXLEN (approximate), ARGV[2] the snapshots MAXLEN (exact), then per message: its kind
# ("u"/"s"), the number of field values that follow, the fields. A snapshot goes to both
# streams, its copy in the snapshots stream with "uid" = its id in the updates stream.
# Returns the number of messages written.
BATCH_SCRIPT: Final = """
local maxlen, kept = ARGV[1], ARGV[2]
local a, k, n = 3, 1, 0
while a <= #ARGV do
  local kind, nf = ARGV[a], tonumber(ARGV[a + 1])
  local id = redis.call('XADD', KEYS[k], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, a + 2, a + 1 + nf))
  if kind == 's' then
    redis.call('XADD', KEYS[k + 1], 'MAXLEN', kept, '*', 'uid', id, unpack(ARGV, a + 2, a + 1 + nf))
  end
  a, k, n = a + 2 + nf, k + 2, n + 1
end
return n
"""


# --- the sink ----------------------------------------------------------------------------


@attrs.define(eq=False)
class _Pub:
    """What the sink last published for one book."""

    entry: BookEntry
    updates_key: str
    snapshots_key: str
    seq: int = 0
    sent_state: BookState | None = None
    bids: list[Level] = attrs.field(factory=list)  # as last published
    asks: list[Level] = attrs.field(factory=list)
    since_snapshot: int = 0
    need_snapshot: bool = True
    dirty_since: float | None = None


class RedisSink:
    """Publishes the books of ``store`` to Redis (see the module docstring)."""

    def __init__(self, cfg: RedisSinkConfig, store: BookStore, shard: str = "") -> None:
        self.cfg = cfg
        self.store = store
        self.shard = shard
        self.publisher = f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        self.stats = RedisSinkStats(url=redacted(cfg.url), shard=shard, publisher=self.publisher, queue_capacity=cfg.queue)
        self.pubs = []
        for e in store.entries():
            ukey, skey = stream_keys(e.venue, e.symbol)
            self.pubs.append(_Pub(e, ukey, skey))
        self.stats.books = len(self.pubs)
        self.pending: dict[int, _Pub] = {}  # id(pub) -> pub, insertion ordered
        self.overflowed: dict[int, _Pub] = {}
        self._wake = trio.Event()
        self._wire: RedisConnection | None = None
        self._up: bool | None = None
        self._failures = 0
        self._next_heartbeat = 0.0
        self._limiter = RateLimiter(window=60.0)
        self._log = named("sink:redis")

    # --- marking ----------------------------------------------------------------------
    def mark(self, pub: _Pub) -> None:
        key = id(pub)
        if key in self.pending or key in self.overflowed:
            return
        if pub.dirty_since is None:
            pub.dirty_since = trio.current_time()
        if len(self.pending) < self.cfg.queue:
            self.pending[key] = pub
            n = len(self.pending)
            self.stats.pending = n
            if n > self.stats.pending_high_water:
                self.stats.pending_high_water = n
        else:
            pub.need_snapshot = True
            self.overflowed[key] = pub
            self.stats.overflows += 1
        self._wake.set()

    async def _watch(self, pub: _Pub) -> None:
        entry = pub.entry
        seen = -1
        while True:
            if entry.seq == seen:
                await entry.changed_event().wait()
            seen = entry.seq
            self.mark(pub)

    # --- encoding (Trio thread: a consistent view of each book) -----------------------------
    def _common(self, pub: _Pub, kind: str) -> dict[str, str]:
        e = pub.entry
        pub.seq += 1
        out = {"type": kind, "seq": str(pub.seq), "publisher": self.publisher, "version": str(e.seq), "ts": repr(time.time())}
        if e.update_id is not None:
            out["update_id"] = str(e.update_id)
        if e.exchange_ts is not None:
            out["exchange_ts"] = repr(e.exchange_ts)
        if e.received_ts is not None:
            out["received_ts"] = repr(e.received_ts)
        return out

    def encode(self, pub: _Pub) -> tuple[str, dict[str, str]] | None:
        """The next message of one book (``("snapshot"|"update", fields)``), or None when
        nothing visible changed."""
        e = pub.entry
        live = e.state is BookState.LIVE and e.book is not None
        if not live:
            if pub.sent_state is e.state and not pub.need_snapshot:
                return None
            return "snapshot", self._snapshot(pub, e.state, [], [])
        bids = e.book.top_bids(self.cfg.depth)
        asks = e.book.top_asks(self.cfg.depth)
        if pub.need_snapshot or pub.sent_state is not BookState.LIVE or pub.since_snapshot >= self.cfg.snapshot_every:
            return "snapshot", self._snapshot(pub, BookState.LIVE, bids, asks)
        d_bids, d_asks = diff_side(pub.bids, bids), diff_side(pub.asks, asks)
        if not d_bids and not d_asks:
            return None
        if len(d_bids) + len(d_asks) > len(bids) + len(asks):
            return "snapshot", self._snapshot(pub, BookState.LIVE, bids, asks)
        pub.bids, pub.asks = bids, asks
        pub.since_snapshot += 1
        fields = self._common(pub, "update")
        fields["bids"] = orjson.dumps(d_bids).decode()
        fields["asks"] = orjson.dumps(d_asks).decode()
        return "update", fields

    def _snapshot(self, pub: _Pub, state: BookState, bids: list[Level], asks: list[Level]) -> dict[str, str]:
        pub.bids, pub.asks = bids, asks
        pub.sent_state = state
        pub.need_snapshot = False
        pub.since_snapshot = 0
        fields = self._common(pub, "snapshot")
        fields["state"] = state.value
        fields["depth"] = str(self.cfg.depth)
        fields["bids"] = orjson.dumps(bids).decode()
        fields["asks"] = orjson.dumps(asks).decode()
        return fields

    def index_value(self, pub: _Pub) -> str:
        e = pub.entry
        return orjson.dumps({"venue": e.venue, "symbol": e.symbol, "shard": self.shard, "publisher": self.publisher,
                             "updates": pub.updates_key, "snapshots": pub.snapshots_key, "depth": self.cfg.depth}).decode()

    # --- Redis -----------------------------------------------------------------------------
    def _connect_commands(self) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = [("PING",), self._heartbeat_command()]
        if self.pubs:
            flat: list[str] = []
            for p in self.pubs:
                flat += (f"{p.entry.venue}:{p.entry.symbol}", self.index_value(p))
            commands.append(("HSET", INDEX_KEY, *flat))
        return commands

    def _heartbeat_command(self) -> tuple[Any, ...]:
        value = orjson.dumps({"shard": self.shard, "books": len(self.pubs), "ts": time.time()}).decode()
        return ("SET", publisher_key(self.publisher), value, "PX", HEARTBEAT_TTL_MS)

    def _write_commands(self, ops: list[tuple[str, _Pub, dict[str, str]]], heartbeat: bool) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        if ops:
            keys: list[str] = []
            args: list[Any] = [self.cfg.maxlen, SNAPSHOTS_KEPT]
            for kind, pub, fields in ops:
                keys += (pub.updates_key, pub.snapshots_key)
                args += ("u" if kind == "update" else "s", 2 * len(fields))
                for k, v in fields.items():
                    args += (k, v)
            commands.append(("EVAL", BATCH_SCRIPT, len(keys), *keys, *args))
        if heartbeat:
            commands.append(self._heartbeat_command())
        return commands

    async def _send(self, payload: bytes, count: int) -> None:
        if self._wire is None:
            self._wire = await RedisConnection.open(self.cfg.url)
        try:
            await self._wire.execute_packed(payload, count, timeout=SOCKET_TIMEOUT)
        except RedisConnectionError:
            wire, self._wire = self._wire, None
            await wire.aclose()
            raise

    async def _retire(self) -> None:
        """Say we are gone, so consumers mark our books stale at once (on a fresh
        connection: the sink's own may have been cancelled half-way through a batch)."""
        wire = await RedisConnection.open(self.cfg.url)
        try:
            await wire.execute([("DEL", publisher_key(self.publisher))], timeout=SOCKET_TIMEOUT)
        finally:
            await wire.aclose()

    # --- the publisher task -----------------------------------------------------------------
    def _failed(self, exc: BaseException, what: str) -> None:
        self.stats.errors += 1
        self._failures += 1
        msg = f"{what}: {type(exc).__name__}: {str(exc)[:200]}"
        self.stats.last_error = msg
        if self._up is not False:
            self.stats.outages += 1
            self._up = False
        self.stats.connected = False
        for pub in self.pubs:  # whatever Redis has now, every book starts again from a snapshot
            pub.need_snapshot = True
        repeats = self._limiter.check(what)
        if repeats is not None:
            more = f" ({repeats} more since)" if repeats else ""
            self._log.warning("Redis {} failed, retrying with backoff; books keep running{}: {}", what, more, msg)

    def _take_batch(self) -> list[_Pub]:
        while self.overflowed and len(self.pending) < self.cfg.queue:
            key, pub = next(iter(self.overflowed.items()))
            del self.overflowed[key]
            self.pending[key] = pub
        batch = []
        for key in list(self.pending)[:BATCH_BOOKS]:
            batch.append(self.pending.pop(key))
        self.stats.pending = len(self.pending) + len(self.overflowed)
        return batch

    async def run(self, task_status: trio.TaskStatus[RedisSinkStats] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for pub in self.pubs:
                    nursery.start_soon(self._watch, pub, name=f"sink:redis:{pub.entry.venue}:{pub.entry.symbol}")
                task_status.started(self.stats)
                await self._publish_forever()
        finally:
            wire, self._wire = self._wire, None
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                if wire is not None:
                    await wire.aclose()
                    try:
                        await self._retire()
                    except RedisError:
                        pass

    def _encoded(self, since: float) -> None:
        took = time.perf_counter() - since
        self.stats.encode_seconds += took
        if took > self.stats.encode_max_s:
            self.stats.encode_max_s = took

    async def _publish_forever(self) -> None:
        while True:
            if self._up is not True:
                if self._failures:
                    await trio.sleep(backoff_delay(self._failures, base=BACKOFF_BASE, cap=BACKOFF_CAP))
                commands = self._connect_commands()
                try:
                    await self._send(pack(commands), len(commands))
                except RedisError as exc:
                    self._failed(exc, "connect")
                    continue
                if self._up is False:
                    self._log.info("Redis reachable again after {} failed operations; publishing fresh snapshots", self._failures)
                    self.stats.outage_snapshots += len(self.pubs)
                self._up = True
                self._failures = 0
                self.stats.connected = True
                self._next_heartbeat = trio.current_time() + HEARTBEAT_INTERVAL
                for pub in self.pubs:  # after (re)connecting every book gets a fresh snapshot
                    pub.need_snapshot = True
                    self.mark(pub)
            if not self.pending and not self.overflowed:
                with trio.move_on_at(self._next_heartbeat):
                    await self._wake.wait()
            self._wake = trio.Event()
            batch = self._take_batch()
            ops: list[tuple[str, _Pub, dict[str, str]]] = []
            dirty: list[tuple[_Pub, float]] = []
            slice_started = time.perf_counter()
            for i, pub in enumerate(batch):
                if i and i % ENCODE_SLICE == 0:
                    self._encoded(slice_started)
                    await trio.lowlevel.checkpoint()  # changes seen meanwhile re-mark the book
                    slice_started = time.perf_counter()
                if pub.dirty_since is not None:
                    dirty.append((pub, pub.dirty_since))
                    pub.dirty_since = None
                msg = self.encode(pub)
                if msg is not None:
                    ops.append((msg[0], pub, msg[1]))
            self._encoded(slice_started)
            heartbeat = trio.current_time() >= self._next_heartbeat
            if not ops and not heartbeat:
                continue
            packed = time.perf_counter()
            commands = self._write_commands(ops, heartbeat)
            payload = pack(commands)
            self._encoded(packed)
            started = trio.current_time()
            try:
                await self._send(payload, len(commands))
            except RedisError as exc:
                self._failed(exc, "write")
                continue
            now = trio.current_time()
            if heartbeat:
                self._next_heartbeat = now + HEARTBEAT_INTERVAL
            st = self.stats
            st.batches += 1
            st.write_seconds += now - started
            st.last_publish_at = now
            st.bytes += len(payload)
            for kind, _, _ in ops:
                st.messages += 1
                if kind == "update":
                    st.updates += 1
                else:
                    st.snapshots += 1
            for pub, since in dirty:
                st.latency.observe(now - since)
                st.recent.append(now - since)


async def run_redis_sink(
    cfg: RedisSinkConfig,
    store: BookStore,
    shard: str = "",
    *,
    task_status: trio.TaskStatus[RedisSinkStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish every book of ``store`` to Redis until cancelled; never raises for Redis
    failures (they are counted in ``store.sinks["redis"]`` and retried with backoff)."""
    sink = RedisSink(cfg, store, shard)
    sinks = getattr(store, "sinks", None)
    if sinks is None:
        sinks = {}
        store.sinks = sinks  # type: ignore[attr-defined]
    sinks["redis"] = sink.stats
    await sink.run(task_status=task_status)


__all__ = ["INDEX_KEY", "SNAPSHOTS_KEPT", "RedisSink", "RedisSinkStats", "book_key", "diff_side", "publisher_key", "redacted",
           "run_redis_sink", "sink_metric_families", "stream_keys"]
