"""Redis Streams sink: every book of this instance, published to Redis.

Layout (``{venue}``/``{symbol}`` are the venue id and the venue's own symbol)::

    books:{venue}:{symbol}:updates     stream: every message of the book, in order
    books:{venue}:{symbol}:snapshots   stream: the latest few full snapshots (exact MAXLEN 5)
    books:index                        hash: "{venue}:{symbol}" -> JSON {venue, symbol, shard, publisher, updates, snapshots, depth}
    books:publisher:{publisher}        string with a 5 s TTL, refreshed every second while the sink runs

Each stream entry is a flat map of text fields:

* ``type``: ``snapshot`` (a full top-``depth`` book, or an empty one with a state other than live)
  or ``update`` (the levels that changed since the previous message; quantity ``"0"`` removes);
* ``seq``: this book's message number, 1, 2, 3 … per ``publisher``. A consumer that sees a
  number skipped (or a new ``publisher``) has missed something and re-reads the latest snapshot;
* ``publisher``: one id per sink run (the sequence starts again with a new id);
* ``state`` (snapshots): ``live``, ``syncing``, ``stale`` or ``rejected``: every state change is a snapshot,
  so a consumer always knows when a book is not live;
* ``bids``/``asks``: JSON arrays of ``[price, qty]``, the venue's exact decimal strings;
* ``version`` (the book's own change counter), ``update_id``, ``exchange_ts``, ``received_ts``,
  ``ts`` (wall clock when published).

A snapshot is written to both streams at once (by the batch's Lua script, see below); its copy in the
``snapshots`` stream has an extra field ``uid``, the id of the same message in ``updates``, so
a consumer starts from the latest snapshot and reads ``updates`` after ``uid``.

Publishing never blocks the feeds. One watcher task per book marks the book pending when it
changes (conflated: a book is pending once, however often it changed); one publisher task
takes the pending books, encodes each as the difference between what it last published and
the book now (latest state wins, nothing is lost: the difference is exact), and writes the
batch from a worker thread (the ``redis`` client is synchronous) as one pipeline of two
commands: one ``EVAL`` of a small Lua script that does every ``XADD ... MAXLEN ~`` of the batch
(so a batch is written whole, and the thread parses one reply, not hundreds, while it competes
with the feeds for the GIL) and the heartbeat ``SET``. While a batch is in flight, changes
simply accumulate. A snapshot is published instead of an update when the book
(re)goes live or changes state, after ``snapshot_every`` updates, when the difference is larger
than the book, for a book that overflowed the bounded pending queue (``queue``), and for every
book after Redis failed (an outage or any error): all are counted in :class:`RedisSinkStats`,
kept at ``store.sinks["redis"]``. Redis failures are retried with backoff; the books keep running.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs
import orjson
import trio

from ..backoff import backoff_delay
from ..config import RedisSinkConfig
from ..errors import ConfigError
from ..log import RateLimiter, named
from ..model import BookState, Level
from ..store import LATENCY_BUCKETS, BookEntry, BookStore, LatencyHistogram

PREFIX: Final = "books"
INDEX_KEY: Final = f"{PREFIX}:index"
SNAPSHOTS_KEPT: Final = 5
"""Exact MAXLEN of each ``snapshots`` stream (a consumer only needs the latest)."""
HEARTBEAT_INTERVAL: Final = 1.0
HEARTBEAT_TTL_MS: Final = 5000
BATCH_BOOKS: Final = 512
"""Books encoded into one pipeline at most."""
ENCODE_SLICE: Final = 64
"""Books encoded between two checkpoints (keeps the Trio thread responsive)."""
BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 5.0
SOCKET_TIMEOUT: Final = 5.0
CONNECT_TIMEOUT: Final = 2.0
RECENT_LATENCIES: Final = 4096

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


def book_key(venue: str, symbol: str) -> str:
    return f"{PREFIX}:{venue}:{symbol}"


def stream_keys(venue: str, symbol: str) -> tuple[str, str]:
    """``(updates, snapshots)`` stream keys of one book."""
    base = book_key(venue, symbol)
    return f"{base}:updates", f"{base}:snapshots"


def publisher_key(publisher: str) -> str:
    return f"{PREFIX}:publisher:{publisher}"


def redacted(url: str) -> str:
    """The URL without its password (for logs and stats)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def connect(url: str, **kwargs: Any):
    """A synchronous ``redis.Redis`` for ``url`` that fails fast (we retry ourselves)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("sinks.redis: the redis client library is not installed (pip install 'trio-books[redis]')") from None
    return redis.Redis.from_url(url, socket_timeout=kwargs.pop("socket_timeout", SOCKET_TIMEOUT),
                                socket_connect_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0), **kwargs)


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


NUDGE_EVERY: Final = 0.002
NUDGE_IDLE_MAX: Final = 0.05
NUDGE_SLEEP: Final = 0.0001


async def in_thread(fn: Any, *args: Any) -> Any:
    """``trio.to_thread.run_sync(fn, *args)`` (abandoned on cancellation) that a busy Trio
    thread cannot starve.

    A Trio thread that is busy and makes many short system calls (``epoll`` with no timeout,
    socket reads) lets the GIL go and takes it straight back each time, which resets the
    interpreter's forced-switch timer: a worker thread waiting for the GIL can then wait for
    seconds (measured here: 0.3 to 1 s for one ``send``). So while the call runs and the Trio
    thread is busy (it used more than half of the last interval's wall time in CPU), every
    ``NUDGE_EVERY`` seconds this sleeps ``NUDGE_SLEEP`` (0.1 ms, blocking) on the Trio thread,
    long enough for the waiting worker to take the GIL: at most 5 % of the Trio thread while a
    call is in flight. While the loop
    is idle it sleeps in ``epoll`` anyway and nothing is done (the check backs off to
    ``NUDGE_IDLE_MAX``)."""

    async def nudge() -> None:
        every = NUDGE_EVERY
        wall, cpu = time.perf_counter(), time.thread_time()
        while True:
            await trio.sleep(every)
            now_wall, now_cpu = time.perf_counter(), time.thread_time()
            if now_cpu - cpu > 0.5 * (now_wall - wall):  # the Trio thread is busy
                time.sleep(NUDGE_SLEEP)
                every = NUDGE_EVERY
            else:
                every = min(NUDGE_IDLE_MAX, every * 2)
            wall, cpu = time.perf_counter(), time.thread_time()

    failure: Exception | None = None
    result: Any = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(nudge)
        try:
            result = await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        except Exception as exc:  # raised below, outside the nursery (not in an exception group)
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


def pack(commands: list[tuple[Any, ...]]) -> bytes:
    """Commands in the Redis protocol (RESP), as one buffer."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if type(arg) is bytes else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Wire:
    """One dedicated connection that sends a whole batch of commands, packed beforehand
    (:func:`pack`), with one write, and then reads every reply.

    A worker thread competes with a busy Trio thread for the GIL, and each time it lets the
    GIL go (every system call) it may wait a whole switch interval (5 ms) to get it back, while
    each stretch it holds the GIL stalls the feeds. So the thread does as little Python as it
    can: one send, then the replies. Any failure drops the connection (the next batch
    connects afresh)."""

    def __init__(self, url: str) -> None:
        self.client = connect(url)
        self.conn: Any = None

    def _connection(self) -> Any:
        if self.conn is None:
            pool = self.client.connection_pool
            try:
                self.conn = pool.get_connection()
            except TypeError:  # redis-py < 5.1 wants a command name
                self.conn = pool.get_connection("PING")
        return self.conn

    def run(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` packed commands; their replies (the first error reply is raised
        once every reply was read)."""
        from redis.exceptions import ResponseError

        conn = self._connection()
        try:
            conn.send_packed_command([payload], check_health=False)
            replies: list[Any] = []
            error: BaseException | None = None
            for _ in range(count):
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    error = error or exc
                    replies.append(exc)
            if error is not None:
                raise error
            return replies
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.disconnect()
            finally:
                self.client.connection_pool.release(conn)

    def close(self) -> None:
        try:
            self.drop()
        finally:
            self.client.close()


# --- exact differences of top-N levels -------------------------------------------------


def diff_side(old: list[Level], new: list[Level]) -> list[Level]:
    """Levels that turn ``old`` into ``new``, removals first (quantity ``"0"``), then changed
    or added levels as they are now. Keyed by the price text: a new spelling of a price
    (``"1.10"`` → ``"1.1"``) is a removal of the old text and an addition of the new, which a
    book keyed by value applies correctly because the removal comes first."""
    if old == new:
        return []
    olds = set(old)
    came = [level for level in new if level not in olds]
    news = set(new)
    came_prices = {level[0] for level in came}
    out: list[Level] = [(p, "0") for p, q in old if (p, q) not in news and p not in came_prices]
    out.extend(came)
    return out


# --- statistics --------------------------------------------------------------------------


@attrs.define
class RedisSinkStats:
    """Counters of one Redis sink (``store.sinks["redis"]``); all plain numbers."""

    url: str
    shard: str
    publisher: str
    queue_capacity: int
    books: int = 0
    connected: bool = False
    messages: int = 0
    snapshots: int = 0
    updates: int = 0
    bytes: int = 0  # bytes written to Redis (the protocol, all included)
    batches: int = 0
    errors: int = 0  # failed Redis operations (writes, connection attempts)
    outages: int = 0  # times Redis went from reachable to not (the first failure counts too)
    overflows: int = 0  # books that found the pending queue full (each got a snapshot later)
    outage_snapshots: int = 0  # snapshots published because Redis had failed
    pending: int = 0
    pending_high_water: int = 0
    write_seconds: float = 0.0  # time spent in pipelines (worker thread round trips)
    encode_seconds: float = 0.0  # time spent encoding on the Trio thread
    encode_max_s: float = 0.0  # longest stretch the sink held the Trio thread
    last_error: str | None = None
    last_publish_at: float | None = None  # trio clock
    latency: LatencyHistogram = attrs.field(factory=LatencyHistogram)  # change seen -> written to Redis
    recent: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=RECENT_LATENCIES))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name not in ("latency", "recent")}
        out["latency_mean_s"] = self.latency.total / self.latency.n if self.latency.n else None
        return out


def sink_metric_families(stats: RedisSinkStats | None) -> Iterator[Any]:
    """Prometheus families for ``/metrics`` (nothing when no sink runs)."""
    if stats is None:
        return
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    def counter(name: str, doc: str, value: float) -> Any:
        m = CounterMetricFamily(f"trio_books_redis_{name}", doc)
        m.add_metric([], value)
        return m

    def gauge(name: str, doc: str, value: float) -> Any:
        m = GaugeMetricFamily(f"trio_books_redis_{name}", doc)
        m.add_metric([], value)
        return m

    yield gauge("connected", "1 while the Redis sink can write", 1.0 if stats.connected else 0.0)
    yield counter("messages", "Stream messages published (snapshots and updates)", stats.messages)
    yield counter("snapshots", "Snapshots published", stats.snapshots)
    yield counter("updates", "Updates published", stats.updates)
    yield counter("written_bytes", "Bytes written to Redis", stats.bytes)
    yield counter("batches", "Batches written (one pipeline each)", stats.batches)
    yield counter("errors", "Failed Redis operations", stats.errors)
    yield counter("outages", "Times Redis became unreachable or failed", stats.outages)
    yield counter("overflows", "Books that found the pending queue full (a snapshot followed)", stats.overflows)
    yield gauge("pending", "Books with changes not yet published", stats.pending)
    yield gauge("pending_high_water", "Most books pending at once", stats.pending_high_water)
    yield gauge("queue_capacity", "Bound of the pending queue", stats.queue_capacity)
    hist = HistogramMetricFamily("trio_books_redis_publish_latency_seconds", "Book change seen to written to Redis")
    buckets, running = [], 0
    for bound, count in zip(LATENCY_BUCKETS, stats.latency.counts):
        running += count
        buckets.append((repr(bound), running))
    buckets.append(("+Inf", stats.latency.n))
    hist.add_metric([], buckets, stats.latency.total)
    yield hist


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
        self._wire: Wire | None = None
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

    # --- Redis (worker thread) --------------------------------------------------------------
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

    def _send_sync(self, payload: bytes, count: int) -> None:
        if self._wire is None:
            self._wire = Wire(self.cfg.url)
        self._wire.run(payload, count)

    def _retire_sync(self) -> None:
        wire = Wire(self.cfg.url)  # a fresh connection: the sink's own may still be busy
        try:
            wire.run(pack([("DEL", publisher_key(self.publisher))]), 1)
        finally:
            wire.close()

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
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                try:
                    if self._wire is not None:  # say we are gone: consumers mark our books stale at once
                        await in_thread(self._retire_sync)
                except Exception:
                    pass
            wire, self._wire = self._wire, None
            if wire is not None:
                try:
                    wire.close()
                except Exception:
                    pass

    def _encoded(self, since: float) -> None:
        took = time.perf_counter() - since
        self.stats.encode_seconds += took
        if took > self.stats.encode_max_s:
            self.stats.encode_max_s = took

    async def _publish_forever(self) -> None:
        errors = redis_errors()
        while True:
            if self._up is not True:
                if self._failures:
                    await trio.sleep(backoff_delay(self._failures, base=BACKOFF_BASE, cap=BACKOFF_CAP))
                commands = self._connect_commands()
                try:
                    await in_thread(self._send_sync, pack(commands), len(commands))
                except errors as exc:
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
                await in_thread(self._send_sync, payload, len(commands))
            except errors as exc:
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
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConfigError("sinks.redis: the redis client library is not installed (pip install 'trio-books[redis]')") from None
    sink = RedisSink(cfg, store, shard)
    sinks = getattr(store, "sinks", None)
    if sinks is None:
        sinks = {}
        store.sinks = sinks  # type: ignore[attr-defined]
    sinks["redis"] = sink.stats
    await sink.run(task_status=task_status)


__all__ = ["INDEX_KEY", "RedisSink", "RedisSinkStats", "Wire", "book_key", "diff_side", "in_thread", "pack", "publisher_key", "run_redis_sink",
           "sink_metric_families", "stream_keys"]
