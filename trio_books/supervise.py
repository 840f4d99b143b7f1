"""The per-venue supervisor: one restart loop per connection, never giving up.

It knows a venue only as a :class:`~trio_books.venues.Venue` value. Each
attempt runs in its own cancel scope; whatever ends it (an exception, a close,
a stale heartbeat, a gap, a checksum mismatch, an overflow) is counted under
its reason, logged once (repeats are rate-limited), the books go ``stale``,
and a fresh attempt starts after exponential backoff with full jitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import trio
from loguru import logger

from .backoff import AttemptBudget, backoff_delay
from .config import ServiceConfig, VenueConfig
from .errors import AttemptFailure, SnapshotFailed
from .log import RateLimiter
from .model import BookState
from .session import RestLimiter, VenueRuntime, run_attempt
from .store import BookStore
from .transport import http_client
from .venues import Venue

DEGRADED_AFTER = 3
"""Consecutive failed attempts after which a venue reports ``degraded``."""


def connection_groups(symbols: Sequence[str], per_connection: int) -> list[tuple[str, ...]]:
    """Split symbols into connections within the venue's per-connection limit."""
    n = max(1, per_connection)
    return [tuple(symbols[i : i + n]) for i in range(0, len(symbols), n)]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def classify(exc: BaseException) -> tuple[str, str, float | None]:
    """``(reason, one-line message, retry_after)`` for whatever ended an attempt."""
    leaves = _leaves(exc)
    chosen = next((e for e in leaves if isinstance(e, AttemptFailure)), leaves[0])
    if isinstance(chosen, AttemptFailure):
        retry = chosen.retry_after if isinstance(chosen, SnapshotFailed) else None
        return chosen.reason, str(chosen) or type(chosen).__name__, retry
    return "error", f"{type(chosen).__name__}: {str(chosen)[:200]}", None


async def supervise_venue(venue: Venue, cfg: VenueConfig, service: ServiceConfig, store: BookStore, recorder=None) -> None:
    """Run every connection of one venue forever. Never raises an ordinary exception."""
    stats = store.venues[venue.id]
    groups = connection_groups(list(cfg.symbols), venue.max_symbols_per_connection)
    stats.connections = len(groups)
    rt = VenueRuntime(venue=venue, cfg=cfg, service=service, store=store, stats=stats, recorder=recorder)
    if venue.rest_budget is not None:
        rt.rest_limiter = RestLimiter(venue.rest_budget.weight_per_minute)
    if venue.connect_budget is not None:
        rt.connect_budget = AttemptBudget(*venue.connect_budget)
    async with http_client() as http:
        rt.http = http
        async with trio.open_nursery() as nursery:
            for index, symbols in enumerate(groups):
                nursery.start_soon(run_connection_forever, rt, symbols, index, name=f"{venue.id}:conn{index}")


async def run_connection_forever(rt: VenueRuntime, symbols: tuple[str, ...], index: int) -> None:
    venue, store, stats, cfg = rt.venue, rt.store, rt.stats, rt.cfg
    log = logger.bind(venue=venue.id)
    limiter = RateLimiter(window=60.0)
    failures = 0
    first = True
    while True:
        if rt.connect_budget is not None:
            wait = rt.connect_budget.delay(trio.current_time())
            if wait > 0:
                log.warning("connection-attempt budget used up; waiting {:.1f} s", wait)
                await trio.sleep(wait)
            rt.connect_budget.record(trio.current_time())
        began = trio.current_time()
        stats.attempts += 1
        if not first:
            stats.reconnects += 1
        first = False
        store.set_state(venue.id, symbols, BookState.SYNCING)
        failure: BaseException | None = None
        with trio.CancelScope():
            try:
                await run_attempt(rt, symbols, log)
            except Exception as exc:  # noqa: BLE001 - the attempt boundary; Cancelled is BaseException
                failure = exc
        went_stale = store.set_state(venue.id, symbols, BookState.STALE)
        if failure is None:  # run_attempt only returns if a task returned early; treat as a close
            reason, message, retry_after = "close", "connection ended", None
        else:
            reason, message, retry_after = classify(failure)
        stats.failures[reason] += 1
        stats.last_error = f"{reason}: {message}"
        healthy = trio.current_time() - began >= cfg.healthy_after
        failures = 1 if healthy else failures + 1
        stats.consecutive_failures = 0 if healthy else stats.consecutive_failures + 1
        delay = backoff_delay(failures, base=cfg.backoff_base, cap=cfg.backoff_cap)
        if retry_after is not None:
            delay = max(delay, retry_after)
        repeats = limiter.check((reason, message))
        if repeats is not None:
            more = f" (and {repeats} more like it)" if repeats else ""
            level = "WARNING" if reason in ("close", "heartbeat", "sync_timeout", "snapshot") else "ERROR"
            if stats.consecutive_failures >= DEGRADED_AFTER:
                more += f"; degraded after {stats.consecutive_failures} failures in a row"
            log.log(level, "connection {} ended ({}): {}{}; {} books stale; retry in {:.1f} s",
                    index, reason, message, more, len(went_stale) or len(symbols), delay)
            if reason == "error" and failure is not None:
                log.opt(exception=failure).debug("unexpected failure")
        await trio.sleep(delay if math.isfinite(delay) else cfg.backoff_cap)
