"""Logging: loguru, with the stdlib loggers of our dependencies routed into it,
and a rate limiter so a failure that repeats is logged once, then summarized."""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

from loguru import logger

FORMAT: Final = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"


def named(name: str):
    """A logger whose every line starts with ``name:`` — a venue and connection
    (``"binance_spot conn 2"``), ``"http"``, ``"sink:redis"``. The name is in the
    text, so an application's own sink shows it too; it is also ``extra["venue"]``."""
    prefix = f"{name}: "

    def patch(record) -> None:
        record["message"] = prefix + record["message"]

    return logger.bind(venue=name).patch(patch)


class _Intercept(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        named(record.name).opt(exception=record.exc_info).log(level, record.getMessage())


def setup_logging(level: str = "INFO") -> None:
    """Send our logs and those of trio-websocket/httpx/hypercorn to stderr, one line each."""
    logger.remove()
    logger.enable("trio_books")  # the library is silent until an application enables it
    logger.add(sys.stderr, level=level.upper(), format=FORMAT, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
    for name in ("trio-websocket", "httpx", "httpcore", "hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RateLimiter:
    """Say whether a message with a given key may be logged now.

    The first occurrence always passes; repeats within ``window`` seconds are
    counted and reported with the next one that passes. Keys quiet for a whole
    window are forgotten (at most once a window), so distinct messages cannot
    grow it without bound.
    """

    def __init__(self, window: float = 60.0, clock=time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}
        self._swept = clock()

    def check(self, key: object) -> int | None:
        """``None``: stay quiet. Otherwise the number of repeats suppressed since the last line."""
        now = self._clock()
        if now - self._swept >= self.window:
            self._swept = now
            for old in [k for k, t in self._last.items() if now - t >= self.window and k not in self._suppressed]:
                del self._last[old]
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
