"""The library API: run the venue supervisors inside the caller's Trio program."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .config import Config
from .errors import NotLive
from .model import BookState
from .store import BookStore, BookView
from .supervise import DEGRADED_AFTER, supervise_venue
from .venues import get_venue


@attrs.frozen
class VenueStatistics:
    venue: str
    state: str
    connected: bool
    connections: int
    attempts: int
    reconnects: int
    resyncs: int
    failures: dict[str, int]
    frames: int
    bytes: int
    snapshots_fetched: int
    rest_errors: int
    ignored: dict[str, int]
    last_message_age_s: float | None
    last_error: str | None
    books: dict[str, str]
    book_resyncs: dict[str, int]  # resyncs of single books, by reason (the connection went on)
    book_errors: dict[str, str]  # why each book that is not live is not (its last fault, or the venue's refusal)
    audits: dict[str, int]  # drift audits by result (passed, failed, skipped)


def venue_state(store: BookStore, venue: str) -> str:
    """``live`` (every book live), ``degraded`` (failing again and again),
    ``stale`` (some book is being rebuilt), ``rejected`` (the venue refused some
    symbol) or ``syncing``."""
    stats = store.venues[venue]
    states = [store.state(venue, s) for s in store.symbols(venue)]
    if states and all(s is BookState.LIVE for s in states):
        return "live"
    if stats.consecutive_failures >= DEGRADED_AFTER:
        return "degraded"
    if any(s is BookState.STALE for s in states):
        return "stale"
    if any(s is BookState.REJECTED for s in states):
        return "rejected"
    return "syncing"


def venue_statistics(store: BookStore, venue: str) -> VenueStatistics:
    st = store.venues[venue]
    age = None if st.last_message_at is None else max(0.0, trio.current_time() - st.last_message_at)
    return VenueStatistics(
        venue=venue,
        state=venue_state(store, venue),
        connected=st.connected > 0,
        connections=st.connections,
        attempts=st.attempts,
        reconnects=st.reconnects,
        resyncs=st.resyncs,
        failures=dict(st.failures),
        frames=st.frames,
        bytes=st.bytes,
        snapshots_fetched=st.snapshots_fetched,
        rest_errors=st.rest_errors,
        ignored=dict(st.ignored),
        last_message_age_s=age,
        last_error=st.last_error,
        books={s: store.state(venue, s).value for s in store.symbols(venue)},
        book_resyncs=dict(st.book_resyncs),
        audits=dict(st.audits),
        book_errors={e.symbol: e.error for e in store.entries()
                     if e.venue == venue and e.error is not None and e.state is not BookState.LIVE},
    )


class Books:
    """A read-only handle on the running books (see :func:`open_books`)."""

    def __init__(self, store: BookStore) -> None:
        self._store = store

    @property
    def store(self) -> BookStore:
        return self._store

    def view(self, venue: str, symbol: str, depth: int | None = None) -> BookView:
        """An immutable copy of a live book. Raises :class:`~trio_books.NotLive`
        while it is syncing or stale, :class:`~trio_books.UnknownBook` if not configured."""
        return self._store.view(venue, symbol, depth)

    def state(self, venue: str, symbol: str) -> BookState:
        return self._store.state(venue, symbol)

    async def wait_live(self, venue: str, symbol: str | None = None) -> None:
        """Wait until the book (or every book of the venue) is live."""
        symbols = [symbol] if symbol is not None else self._store.symbols(venue)
        for s in symbols:
            self._store.entry(venue, s)  # unknown → UnknownBook now, not a hang
        while not all(self._store.state(venue, s) is BookState.LIVE for s in symbols):
            await self._store.wait_change()

    async def wait_state(self, venue: str, symbol: str, state: BookState) -> None:
        while self._store.state(venue, symbol) is not state:
            await self._store.wait_change()

    async def updates(self, venue: str, symbol: str, depth: int | None = None) -> AsyncIterator[BookView]:
        """Views of the book each time it changes. Conflated: a slow consumer gets
        the latest state, never a backlog; states other than live come through
        as empty views with their state, so a consumer sees every outage."""
        entry = self._store.entry(venue, symbol)
        last_seq = -1
        while True:
            if entry.seq == last_seq:
                await entry.changed_event().wait()
            last_seq = entry.seq
            yield self._store.view(venue, symbol, depth, allow_not_live=True)

    def consolidated(self, instrument: str, depth: int = 20, venues: set[str] | None = None,
                     markets: frozenset[str] = frozenset({"spot"})) -> dict:
        """Merged depth for ``instrument`` (e.g. ``"BTC-USD"``: any USD-like quote)
        across the live books of every venue of ``markets`` (spot by default;
        ``{"spot", "perp"}`` mixes them); each level names its venue."""
        from .consolidate import consolidated

        return consolidated(self._store, instrument, depth, venues, markets)

    def consolidated_cost(self, instrument: str, side: str, *, base: str | None = None, quote: str | None = None,
                          venues: set[str] | None = None, markets: frozenset[str] = frozenset({"spot"})) -> dict:
        """What a ``side`` ("buy"/"sell") of ``base`` units (or for ``quote`` units) of
        ``instrument`` costs over the merged live books, naming each venue's fill."""
        from .analytics import as_amount
        from .consolidate import consolidated_cost

        return consolidated_cost(self._store, instrument, side, base=as_amount(base, "base"), quote=as_amount(quote, "quote"),
                                 venues=venues, markets=markets)

    def statistics(self) -> dict[str, VenueStatistics]:
        return {v: venue_statistics(self._store, v) for v in self._store.venues}


def build_store(config: Config) -> BookStore:
    store = BookStore()
    store.shard = config.service.shard
    for vid, vcfg in config.enabled_venues():
        for symbol in vcfg.symbols:
            store.add(vid, symbol)
    return store


class VenueRunner:
    """One supervisor per enabled venue, each in its own cancel scope, so that a
    new configuration (SIGHUP) restarts only the venues whose settings changed."""

    def __init__(self, store: BookStore, recorder=None) -> None:
        self.store, self.recorder = store, recorder
        self.running: dict[str, tuple[Any, trio.CancelScope]] = {}  # venue id -> (its VenueConfig, its scope)
        self.nursery: trio.Nursery | None = None

    async def run(self, config: Config, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            parquet_cfg = config.sinks.parquet
            if parquet_cfg is not None and parquet_cfg.enabled:  # before any book: the capture sees every change
                from .sinks.parquet import run_parquet_sink

                await nursery.start(run_parquet_sink, parquet_cfg, self.store, name="sink:parquet")
            self.apply(config)
            task_status.started(self)
            redis_cfg = config.sinks.redis
            if redis_cfg is not None and redis_cfg.enabled:
                from .sinks.redis import run_redis_sink

                nursery.start_soon(run_redis_sink, redis_cfg, self.store, config.service.shard, name="sink:redis")

    def apply(self, config: Config) -> list[str]:
        """Run ``config``'s venues: start the new, stop the removed, restart the
        changed (their books start over); the others go on untouched. Returns
        the venue ids started or stopped. Synchronous: nothing half-applied."""
        assert self.nursery is not None
        wanted = dict(config.enabled_venues())
        touched = []
        for vid, (vcfg, scope) in list(self.running.items()):
            if wanted.get(vid) != vcfg:
                scope.cancel()
                del self.running[vid]
                self.store.retain(vid, wanted[vid].symbols if vid in wanted else ())
                touched.append(vid)
        for vid, vcfg in wanted.items():
            if vid not in self.running:
                for symbol in vcfg.symbols:
                    if (vid, symbol) not in self.store:
                        self.store.add(vid, symbol)
                scope = trio.CancelScope()
                self.running[vid] = (vcfg, scope)
                self.nursery.start_soon(self._venue, scope, vid, vcfg, config.service, name=f"venue:{vid}")
                touched.append(vid)
        return sorted(set(touched))

    async def _venue(self, scope: trio.CancelScope, vid: str, vcfg: Any, service: Any) -> None:
        with scope:
            await supervise_venue(get_venue(vid), vcfg, service, self.store, self.recorder)


async def run_venues(config: Config, store: BookStore, recorder=None) -> None:
    """Run one supervisor per enabled venue until cancelled (recording raw
    traffic when given a :class:`~trio_books.record.Recorder`)."""
    await VenueRunner(store, recorder).run(config)


@asynccontextmanager
async def open_books(config: Config) -> AsyncIterator[Books]:
    """Run the configured venues in the background for the duration of the block.

    Resource handling: the supervisors, sockets and HTTP clients all live in a
    nursery owned by this context manager and are closed when the block exits.
    Error handling: venue failures never escape (they are retried forever and
    shown in :meth:`Books.statistics`); only a bug or cancellation propagates.
    """
    store = build_store(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_venues, config, store)
        try:
            yield Books(store)
        finally:
            nursery.cancel_scope.cancel()


__all__ = ["Books", "NotLive", "VenueStatistics", "build_store", "open_books", "run_venues", "venue_state", "venue_statistics"]
