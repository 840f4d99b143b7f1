"""REST snapshots: the venue-wide request-weight budget and one book's fetch.

A fetch never ends a connection: what it yields is the snapshot, or the
:class:`~trio_books.errors.BookFault` of that one book (refused, unusable).
"""

from __future__ import annotations

import math
from collections import deque

import trio

from .errors import (
    AttemptFailure,
    BookFault,
    SnapshotFailed,
    SnapshotUnusable,
    SymbolRejected,
)
from .model import Snapshot
from .transport import fetch

FETCH_TRIES = 3
"""Failed tries (timeouts, 5xx, bad bodies) before a snapshot counts as unusable."""
REFUSED_STATUSES = frozenset({400, 404})
"""HTTP statuses by which a venue refuses a symbol (Binance: 400, ``-1121 Invalid symbol``)."""


class RestLimiter:
    """Paces REST snapshots to a venue's request-weight budget, shared by all
    the venue's connections: a sliding 60 s window, so no minute — however it
    is aligned — ever carries more weight than the venue allows. A 429/418
    blocks everyone on the venue until its ``Retry-After`` has passed."""

    WINDOW = 60.0

    def __init__(self, weight_per_minute: int) -> None:
        self.limit = weight_per_minute
        self.spent: deque[tuple[float, int]] = deque()
        self.total = 0
        self.lock = trio.Lock()
        self.blocked_until = -math.inf

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, trio.current_time() + seconds)

    async def acquire(self, weight: int) -> None:
        weight = min(weight, self.limit)
        async with self.lock:
            while True:
                now = trio.current_time()
                if now < self.blocked_until:
                    await trio.sleep_until(self.blocked_until)
                    continue
                while self.spent and self.spent[0][0] <= now - self.WINDOW:
                    self.total -= self.spent.popleft()[1]
                if self.total + weight <= self.limit:
                    self.spent.append((now, weight))
                    self.total += weight
                    return
                await trio.sleep_until(self.spent[0][0] + self.WINDOW)


async def fetch_snapshot(rt, proto, symbol: str, on_request, rec_id: int = 0) -> Snapshot | BookFault:
    """One book's REST snapshot, paced by the venue's budget, or its fault.

    ``on_request()`` is called each time a request actually goes out (the
    book's sync clock starts then, not while it waits for the budget). A
    429/418 blocks the whole venue for its ``Retry-After`` and the request is
    tried again once the budget allows; a 400/404 is the venue refusing the
    symbol; anything else is tried :data:`FETCH_TRIES` times."""
    budget = rt.venue.rest_budget
    url = proto.snapshot_url(symbol)
    tries = 0
    while True:
        if rt.rest_limiter is not None and budget is not None:
            await rt.rest_limiter.acquire(budget.snapshot_weight(rt.depth))
        on_request()
        try:
            body = await fetch(rt.http, url, timeout=rt.cfg.snapshot_timeout)
            break
        except SnapshotFailed as exc:
            rt.stats.rest_errors += 1
            if exc.retry_after is not None and rt.rest_limiter is not None:
                rt.rest_limiter.block(exc.retry_after)
                continue  # told to wait: the limiter holds every request back until then
            if exc.status in REFUSED_STATUSES:
                return SymbolRejected(symbol, f"snapshot refused: {exc}")
            tries += 1
            if tries >= FETCH_TRIES:
                return SnapshotUnusable(symbol, f"no snapshot after {tries} tries ({exc})")
            await trio.sleep(0.5 * tries)
    rt.stats.snapshots_fetched += 1
    if rt.recorder is not None:
        rt.recorder.frame(rt.venue.id, rec_id, "rest", body, url=url, symbol=symbol)
    try:
        return proto.parse_snapshot(symbol, body)
    except BookFault as exc:
        return exc
    except (AttemptFailure, Exception) as exc:  # noqa: BLE001 - a bad body is this book's fault alone
        return SnapshotUnusable(symbol, f"bad snapshot ({type(exc).__name__}: {str(exc)[:120]})")


__all__ = ["RestLimiter", "fetch_snapshot"]
