"""Shared helpers of the Redis tests."""

from __future__ import annotations

import trio

from trio_books.errors import NotLive
from trio_books.testing._base import FakeVenue
from trio_books.testing.harness import converge, view_top


def sink_toml(url: str, **extra) -> str:
    lines = ["[sinks.redis]", f'url = "{url}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


async def converge_exact(remote, fake: FakeVenue, symbol: str, *, n: int = 20, timeout: float = 10.0) -> None:
    """The remote book equals the fake's truth: top ``n`` levels, the very same strings."""
    was = fake.paused
    fake.paused = True
    try:
        await converge(view_top(remote, fake.venue_id, symbol, n), fake, symbol, n=n, timeout=timeout)
        view = remote.view(fake.venue_id, symbol, n)
        want_bids, want_asks = fake.top(symbol, n)
        assert list(view.bids) == [tuple(x) for x in want_bids]
        assert list(view.asks) == [tuple(x) for x in want_asks]
    finally:
        fake.paused = was


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def is_live(books, venue: str, symbol: str) -> bool:
    try:
        books.view(venue, symbol, 1)
        return True
    except (NotLive, KeyError):
        return False
