"""Helpers to test against the fakes: compare books with the fake's truth,
and run ``trio-books run`` as a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import httpx
import trio

from ..book import levels_equal
from ..model import BookState, Level
from ._base import FakeVenue


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_top(got_bids, got_asks, fake: FakeVenue, symbol: str, n: int) -> bool:
    want_bids, want_asks = fake.top(symbol, n)
    return levels_equal(list(got_bids)[:n], want_bids) and levels_equal(list(got_asks)[:n], want_asks)


async def converge(
    get_top: Callable[[], Any],
    fake: FakeVenue,
    symbol: str,
    *,
    n: int = 20,
    timeout: float = 10.0,
    poll: float = 0.05,
) -> None:
    """Pause the fake's stream and wait until ``get_top()`` (sync or async,
    returning ``(bids, asks)`` or ``None`` while not live) equals the fake's
    true top ``n`` levels. Raises AssertionError with both tops on timeout.
    The stream is resumed afterwards."""
    was_paused = fake.paused
    fake.paused = True
    got: Any = None
    try:
        with trio.move_on_after(timeout):
            while True:
                got = get_top()
                if hasattr(got, "__await__"):
                    got = await got
                if got is not None and same_top(got[0], got[1], fake, symbol, n):
                    return
                await trio.sleep(poll)
        want = fake.top(symbol, n)
        raise AssertionError(f"{fake.venue_id}/{symbol} did not converge to the true book within {timeout} s:\n"
                             f"  got  {got!r}\n  want {want!r}")
    finally:
        fake.paused = was_paused


class LiveWatch(trio.abc.Instrument):
    """Checks books at every scheduling point of the run (a Trio instrument):
    ``watched`` books must be live at every step while :attr:`armed`, and no
    book served as live may fail ``served_ok(entry)`` at any step (e.g. "is not
    crossed"). Violations are recorded, never raised (Trio would drop an
    instrument that raises). Use as ``with LiveWatch(books.store, ...) as w:``."""

    def __init__(self, store, venue: str, watched=(), served_ok: Callable[[Any], bool] | None = None) -> None:
        self.store, self.venue, self.watched = store, venue, tuple(watched)
        self.served_ok = served_ok
        self.armed = True
        self.steps = 0
        self.not_live: list[tuple[float, str, str]] = []  # (time, symbol, state) of a watched book
        self.bad_served: list[tuple[float, str]] = []  # (time, symbol) of a live book failing served_ok

    def after_task_step(self, task) -> None:
        self.steps += 1
        live = BookState.LIVE
        if self.armed:
            for symbol in self.watched:
                e = self.store.entry(self.venue, symbol)
                if e.state is not live:
                    self.not_live.append((trio.current_time(), symbol, e.state.value))
        if self.served_ok is not None:
            for e in self.store.entries():
                if e.venue == self.venue and e.state is live and e.book is not None and not self.served_ok(e):
                    self.bad_served.append((trio.current_time(), e.symbol))

    def __enter__(self) -> "LiveWatch":
        trio.lowlevel.add_instrument(self)
        return self

    def __exit__(self, *exc: object) -> None:
        trio.lowlevel.remove_instrument(self)


async def resyncs_alone(books, fake: FakeVenue, venue: str, sick: str, inject: Callable[[], Any], *, healthy=None,
                        converge_all: bool = True, timeout: float = 60.0, settle: float = 0.0,
                        n: int = 20) -> tuple["LiveWatch", float]:
    """One book's fault, the shape of the book-domain tests: watching every other
    book of the venue (or ``healthy``) at every scheduling step, and that no live
    book is crossed, call ``inject()`` (make ``sick`` fail a check), wait until
    ``sick`` was resynced and is live again, let the stream go on for ``settle``
    seconds, then let the books equal the fake's true top ``n`` (all of them, or
    only ``sick``). Returns the watch and how long ``sick`` took to come back
    (from its fault)."""
    entry = books.store.entry(venue, sick)
    others = [s for s in books.store.symbols(venue) if s != sick] if healthy is None else list(healthy)
    with LiveWatch(books.store, venue, others, served_ok=lambda e: not e.book.is_crossed()) as watch:
        inject()
        with trio.fail_after(timeout):
            while not entry.resyncs:
                await trio.sleep(0.01)
            faulted = trio.current_time()
            await books.wait_state(venue, sick, BookState.LIVE)
        back = trio.current_time() - faulted
        await trio.sleep(settle)
        for symbol in (fake.symbols if converge_all else [sick]):
            if (venue, symbol) in books.store:
                await converge(view_top(books, venue, symbol, n), fake, symbol, n=n, timeout=30)
    return watch, back


async def refused_alone(books, fake: FakeVenue, venue: str, valid, refused: str, *, refusals: int = 3,
                        timeout: float = 300.0):
    """A symbol the venue refuses, configured beside ``valid`` ones: wait until the
    valid books are live and ``refused`` is ``rejected``; then, watching the valid
    books at every scheduling step, wait until it was refused ``refusals`` times (the
    first refusal and its retries) and the valid books equal the fake's truth. Checks
    what holds on every venue — the valid books never left live, no connection
    restarted — and returns the venue's statistics for the venue-specific checks."""
    with trio.fail_after(timeout):
        for symbol in valid:
            await books.wait_live(venue, symbol)
        await books.wait_state(venue, refused, BookState.REJECTED)
    entry = books.store.entry(venue, refused)
    with LiveWatch(books.store, venue, valid, served_ok=lambda e: not e.book.is_crossed()) as watch:
        with trio.fail_after(timeout):
            while entry.resyncs["rejected"] < refusals:
                await trio.sleep(0.05)
        for symbol in valid:
            await converge(view_top(books, venue, symbol), fake, symbol, timeout=30)
    assert watch.steps > 100 and watch.not_live == [] and watch.bad_served == [], (watch.not_live[:3], watch.bad_served[:3])
    stats = books.statistics()[venue]
    assert stats.books[refused] == "rejected" and all(stats.books[s] == "live" for s in valid), stats.books
    assert stats.book_resyncs == {"rejected": refusals} and stats.failures == {} and stats.attempts == 1, stats
    return stats


def view_top(books, venue: str, symbol: str, n: int = 20) -> Callable[[], tuple[list[Level], list[Level]] | None]:
    """A ``get_top`` for :func:`converge` over a library ``Books`` handle."""
    from ..errors import NotLive

    def get() -> tuple[list[Level], list[Level]] | None:
        try:
            v = books.view(venue, symbol, n)
        except NotLive:
            return None
        return list(v.bids), list(v.asks)

    return get


async def recover(books, fake: FakeVenue, venue: str, symbols=None, *, live_timeout: float = 60.0,
                  timeout: float = 30.0, n: int = 20) -> None:
    """Wait until ``venue`` is live again in a library ``Books`` handle, then until every
    symbol (default: all the fake serves) equals the fake's true top ``n`` levels."""
    with trio.fail_after(live_timeout):
        await books.wait_live(venue)
    for symbol in fake.symbols if symbols is None else symbols:
        await converge(view_top(books, venue, symbol, n), fake, symbol, n=n, timeout=timeout)


def pauses(times: list[float]) -> list[float]:
    """The pauses between consecutive attempt times (a fake's ``accepted_at``/``connected_at``)."""
    return [b - a for a, b in zip(times, times[1:])]


def assert_full_jitter(times: list[float], *, cap: float = 30.0, slack: float = 0.5,
                       fewer_than: int | None = None, grown: tuple[int, float] | None = None) -> None:
    """Attempt times under full-jitter backoff (base 1 s): the i-th pause is at most
    ``min(cap, 2**i)`` s (+ ``slack`` for connecting and being refused); ``fewer_than``
    bounds the number of attempts (no reconnect storm); ``grown=(k, s)`` asks that some
    pause from the k-th on is longer than ``s`` (the ceiling really grew)."""
    gaps = pauses(times)
    assert all(g <= min(cap, 2.0**i) + slack for i, g in enumerate(gaps)), gaps
    if fewer_than is not None:
        assert len(times) < fewer_than, f"{len(times)} attempts: a reconnect storm"
    if grown is not None:
        k, past = grown
        assert max(gaps[k:]) > past, gaps


def assert_exact_backoff(times: list[float], want: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0), *,
                         slack: float = 0.5) -> None:
    """Attempt times when the jitter is pinned to the top of its range: each pause is the
    expected delay plus at most ``slack`` s to connect and be refused."""
    gaps = pauses(times)
    assert len(gaps) >= len(want), gaps
    for gap, expected in zip(gaps, want):
        assert expected <= gap <= expected + slack, gaps


class ServiceProcess:
    """``trio-books run`` on a config, as a subprocess, with its HTTP API on a free port."""

    def __init__(self, config_text: str, *, extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="trio-books-")
        self.config_path = os.path.join(self._dir.name, "config.toml")
        with open(self.config_path, "w") as fh:
            fh.write(config_text)
        self.log_path = os.path.join(self._dir.name, "service.log")
        self.args = [sys.executable, "-m", "trio_books", "run", "--config", self.config_path,
                     "--http", f"127.0.0.1:{self.port}", *(extra_args or [])]
        self.env = {**os.environ, **(env or {})}
        self.proc: trio.Process | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery, *, ready_timeout: float = 20.0) -> "ServiceProcess":
        self._log = open(self.log_path, "wb")
        self.proc = await nursery.start(
            lambda task_status: trio.run_process(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                                 env=self.env, check=False, task_status=task_status)
        )
        with trio.fail_after(ready_timeout):
            while True:
                try:
                    await self.get("/venues")
                    return self
                except httpx.TransportError:
                    if self.proc.returncode is not None:
                        raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.log()}") from None
                    await trio.sleep(0.1)

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.get(self.base + path)

    def book_top(self, venue: str, symbol: str, n: int = 20) -> Callable[[], Any]:
        """A ``get_top`` for :func:`converge` over ``GET /books/...``."""
        from urllib.parse import quote

        async def get():
            resp = await self.get(f"/books/{venue}/{quote(symbol, safe='')}?depth={n}")
            if resp.status_code != 200:
                return None
            body = resp.json()
            return [tuple(x) for x in body["bids"]], [tuple(x) for x in body["asks"]]

        return get

    async def wait_failures(self, venue: str, reason: str, at_least: int = 1, timeout: float = 15.0) -> dict:
        """Poll ``/health`` until ``venue`` counted ``reason`` at least ``at_least`` times."""
        with trio.fail_after(timeout):
            while True:
                health = (await self.get("/health")).json()
                if health["venues"][venue]["failures"].get(reason, 0) >= at_least:
                    return health
                await trio.sleep(0.1)

    async def stop(self, sig: int = 15, timeout: float = 5.0) -> int:
        """Send ``sig`` (SIGTERM) and wait for the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        with trio.fail_after(timeout):
            await self.proc.wait()
        if self._log:
            self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""
