"""Reconnect delays: exponential backoff with full jitter. Pure; the RNG is injected."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    failures: int,
    *,
    base: float = 1.0,
    cap: float = 30.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (0 → no wait).

    Full jitter: uniform in ``[0, min(cap, base * 2**(failures-1))]``, never below
    a tenth of ``base`` so a failing venue cannot spin.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 32))
    return max(base / 10.0, rng() * ceiling)


class AttemptBudget:
    """At most ``limit`` attempts per ``period`` seconds (a sliding window).

    ``delay(now)`` says how long to wait before the next attempt is allowed;
    ``record(now)`` notes an attempt. Pure: the caller passes the time.
    """

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self._times: list[float] = []

    def delay(self, now: float) -> float:
        self._times = [t for t in self._times if now - t < self.period]
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.period - now

    def record(self, now: float) -> None:
        self._times.append(now)
