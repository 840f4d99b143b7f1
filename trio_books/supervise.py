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
from typing import Any

import trio

from .backoff import AttemptBudget, backoff_delay
from .config import ServiceConfig, VenueConfig
from .errors import AttemptFailure, SnapshotFailed
from .log import RateLimiter, named
from .model import BookState
from .session import RestLimiter, VenueRuntime, run_attempt
from .store import BookStore
from .transport import http_client
from .venues import Venue

DEGRADED_AFTER = 3
"""Consecutive failed attempts after which a venue reports ``degraded``."""
CATCH_UP = 5.0
"""Make-before-break: each book passes to the replacement once it reached the
old connection's update id for it; after this long the rest pass anyway."""


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
    stats.connections = len(groups) * cfg.redundancy
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


class Attempt:
    """One connection attempt as the supervisor sees it.

    ``group``: the book tasks of every attempt that keeps the same books (the
    one serving, a replacement syncing before a planned disconnect, a hot
    standby). Each book is served from one of them that has it live.
    """

    def __init__(self, group: list) -> None:
        self.group = group
        self.keeper: Any = None  # set by run_attempt
        self.scope = trio.CancelScope()
        self.synced = trio.Event()  # every book live (or refused)
        self.planned = trio.Event()  # the venue announced the end of this connection
        self.planned_why = ""
        self.done = trio.Event()
        self.failure: BaseException | None = None
        self.began = 0.0

    def plan_end(self, why: str) -> None:
        if not self.planned.is_set():
            self.planned_why = why
            self.planned.set()


def hand_over(new: Attempt) -> None:
    """Serve ``new``'s live books instead of the old attempt's, in one step (no
    checkpoint): a reader sees the old book or the new one, never a non-live one."""
    new.keeper.take_over()  # the old attempt, cancelled next, releases only what the new one lacks


async def _wait_any(*events: trio.Event, deadline: float = math.inf) -> None:
    async with trio.open_nursery() as nursery:
        def stop_when(event: trio.Event):
            async def waiter() -> None:
                await event.wait()
                nursery.cancel_scope.cancel()
            return waiter

        for event in events:
            nursery.start_soon(stop_when(event))
        nursery.cancel_scope.deadline = deadline


async def run_connection_forever(rt: VenueRuntime, symbols: tuple[str, ...], index: int) -> None:
    """One connection's attempts, forever. An unplanned end (any failure) is
    counted, logged once and followed by a fresh attempt after backoff. A
    planned end — the connection's documented lifetime nearly used up, or the
    venue announcing a disconnect — opens the replacement first, syncs all
    its books, hands the served books over in one step, and only then closes
    the old connection (make-before-break)."""
    venue, store, stats, cfg = rt.venue, rt.store, rt.stats, rt.cfg
    log = named(f"{venue.id} conn {index}")  # every line names the venue and the connection
    if cfg.redundancy > 1:
        await run_hot_standby(rt, symbols, index)
        return
    limiter = RateLimiter(window=60.0)
    failures = 0
    group: list = []
    current: Attempt | None = None
    first = True
    lifetime = cfg.lifetime if cfg.lifetime is not None else venue.max_lifetime
    async with trio.open_nursery() as nursery:
        while True:
            if current is None:
                store.set_state(venue.id, symbols, BookState.SYNCING)
            attempt = await _start_attempt(rt, symbols, group, not first, nursery, log, f"{venue.id}:conn{index}:attempt")
            first = False
            if current is not None:  # make-before-break: the old connection serves meanwhile
                await _wait_any(attempt.synced, attempt.done, current.done)
                if current.done.is_set():  # the venue ended the old one first: serve what the new one has
                    _ended(rt, current, limiter, log, 1)
                    if not attempt.done.is_set():
                        hand_over(attempt)  # (its books were already taken as they went live)
                elif attempt.done.is_set():  # the replacement failed: the old one still serves
                    _ended(rt, attempt, limiter, log, 1)
                    await trio.sleep(backoff_delay(1, base=cfg.backoff_base, cap=cfg.backoff_cap))
                    continue
                else:
                    with trio.move_on_after(CATCH_UP):  # no book may go back: the new one reaches the old one's ids first
                        # each book is handed over as soon as it reached the old one's update id
                        while attempt.keeper.take_over(current.keeper) and not attempt.done.is_set():
                            await trio.sleep(0.01)
                    log.info("replacement synced; {} books handed over", len(symbols))
                    hand_over(attempt)
                    current.scope.cancel()
                    await current.done.wait()
                    stats.failures["planned"] += 1
                    stats.last_error = f"planned: {current.planned_why}"
            current = attempt
            planned_at = attempt.began + lifetime - min(600.0, lifetime / 10) if lifetime else math.inf
            await _wait_any(attempt.planned, attempt.done, deadline=planned_at)
            if not attempt.done.is_set():  # planned: open the replacement now
                attempt.plan_end(attempt.planned_why or f"lifetime of {lifetime:g} s nearly used up")
                log.info("{}; opening its replacement first", attempt.planned_why)
                continue
            healthy = trio.current_time() - attempt.began >= cfg.healthy_after
            failures = 1 if healthy else failures + 1
            delay = _ended(rt, attempt, limiter, log, failures)
            current = None
            await trio.sleep(delay if math.isfinite(delay) else cfg.backoff_cap)


async def _start_attempt(rt: VenueRuntime, symbols: tuple[str, ...], group: list, again: bool, nursery: trio.Nursery,
                         log, name: str) -> Attempt:
    """Start one attempt in ``nursery`` once the venue's connection budget allows."""
    if rt.connect_budget is not None:
        wait = rt.connect_budget.delay(trio.current_time())
        if wait > 0:
            log.warning("connection-attempt budget used up; waiting {:.1f} s", wait)
            await trio.sleep(wait)
        rt.connect_budget.record(trio.current_time())
    attempt = Attempt(group)
    attempt.began = trio.current_time()
    if again:
        rt.stats.reconnects += 1
    rt.stats.attempts += 1
    nursery.start_soon(_run, rt, symbols, attempt, log, name=name)
    return attempt


async def _run(rt: VenueRuntime, symbols: tuple[str, ...], attempt: Attempt, log) -> None:
    try:
        with attempt.scope:
            try:
                await run_attempt(rt, symbols, log, attempt)
            except Exception as exc:  # noqa: BLE001 - the attempt boundary; Cancelled is BaseException
                attempt.failure = exc
    finally:
        if attempt.keeper is not None:
            attempt.keeper.release()  # what it still serves passes to a live peer, or goes stale
        attempt.done.set()


def _ended(rt: VenueRuntime, attempt: Attempt, limiter: RateLimiter, log, failures: int) -> float:
    """Count and log how ``attempt`` ended; return the delay before the next one."""
    stats, cfg = rt.stats, rt.cfg
    if attempt.failure is None:  # run_attempt only returns if a task returned early; treat as a close
        reason, message, retry_after = "close", "connection ended", None
    else:
        reason, message, retry_after = classify(attempt.failure)
    stats.failures[reason] += 1
    stats.last_error = f"{reason}: {message}"
    healthy = trio.current_time() - attempt.began >= cfg.healthy_after
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
        # a bug (reason "error") comes with its traceback, once per distinct failure
        bug = attempt.failure if reason == "error" else None
        log.opt(exception=bug).log(level, "connection ended ({}): {}{}; retry in {:.1f} s", reason, message, more, delay)
    return delay


async def run_hot_standby(rt: VenueRuntime, symbols: tuple[str, ...], index: int) -> None:
    """``redundancy = 2``: two independent connections keep the same books, each
    restarted on its own. Each book is served from a connection that has it live
    (a fault on one passes the book to the other in the same step, see
    :meth:`~trio_books.keeper.BookKeeper.release`), and two live books at the same
    update id must agree on their top levels (``disagree`` otherwise)."""
    group: list = []
    async with trio.open_nursery() as nursery:
        for lane in range(rt.cfg.redundancy):
            nursery.start_soon(_lane, rt, symbols, index, lane, group, name=f"{rt.venue.id}:conn{index}:lane{lane}")


async def _lane(rt: VenueRuntime, symbols: tuple[str, ...], index: int, lane: int, group: list) -> None:
    stats, cfg = rt.stats, rt.cfg
    log = named(f"{rt.venue.id} conn {index}/{lane}")
    limiter = RateLimiter(window=60.0)
    failures = 0
    first = True
    async with trio.open_nursery() as nursery:
        while True:
            attempt = await _start_attempt(rt, symbols, group, not first, nursery, log, f"{rt.venue.id}:conn{index}:lane{lane}")
            first = False
            await _wait_any(attempt.planned, attempt.done)
            if not attempt.done.is_set():  # planned: the other connection serves while this one is replaced
                attempt.scope.cancel()
                await attempt.done.wait()
                stats.failures["planned"] += 1
                continue
            healthy = trio.current_time() - attempt.began >= cfg.healthy_after
            failures = 1 if healthy else failures + 1
            delay = _ended(rt, attempt, limiter, log, failures)
            await trio.sleep(delay if math.isfinite(delay) else cfg.backoff_cap)
