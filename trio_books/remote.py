"""Remote books: rebuild the books that trio-books instances publish to Redis Streams.

::

    async with trio_books.open_remote_books("redis://127.0.0.1:6379/0") as books:
        await books.wait_live("binance_spot", "BTCUSDT")
        view = books.view("binance_spot", "BTCUSDT", depth=10)
        async for view in books.updates("binance_spot", "BTCUSDT", depth=5):
            ...

The handle is a :class:`~trio_books.runner.Books` (``view``, ``state``, ``wait_live``,
``wait_state``, ``updates``, ``consolidated``, ``statistics``) over a local
:class:`~trio_books.store.BookStore`, so an app switches between ``open_books`` and
``open_remote_books`` without code changes. Books are found in the ``books:index`` hash
(with ``books=None``, new ones are picked up while running) and read with ``XREAD BLOCK`` over
a Trio connection (:mod:`trio_books.resp`). Each book starts from its latest snapshot and follows its ``updates`` stream;
a skipped sequence number makes it re-read the latest snapshot. Each book follows the publisher
(sink run) that the index names, so a restarted or second instance never interleaves. A book
is ``live`` only while its publisher is alive (its heartbeat key exists) and Redis is
reachable; otherwise it is ``stale`` until it has been rebuilt. Stream layout: see
:mod:`trio_books.sinks.layout`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from .errors import UnknownBook
from .model import BookState
from .remote_reader import BLOCK_MS, DISCOVER_INTERVAL, RemoteReader, RemoteStats
from .runner import Books
from .store import BookStore


class RemoteBooks(Books):
    """:class:`~trio_books.runner.Books` over books rebuilt from Redis."""

    def __init__(self, store: BookStore, reader: RemoteReader) -> None:
        super().__init__(store)
        self._reader = reader

    async def _wait_known(self, venue: str, symbol: str | None) -> None:
        """With discovery on, wait until the book (or any book of the venue) is known."""
        while True:
            try:
                if symbol is None:
                    if not self._store.symbols(venue):
                        raise UnknownBook(f"unknown venue {venue!r}")
                else:
                    self._store.entry(venue, symbol)
                return
            except UnknownBook:
                if self._reader.fixed:
                    raise
                await self._reader.discovered.wait()

    async def wait_live(self, venue: str, symbol: str | None = None) -> None:
        """Wait until the book (or every known book of the venue) is live. Without a fixed
        ``books`` list this also waits for the book to be published (use a timeout)."""
        await self._wait_known(venue, symbol)
        await super().wait_live(venue, symbol)

    async def wait_state(self, venue: str, symbol: str, state: BookState) -> None:
        await self._wait_known(venue, symbol)
        await super().wait_state(venue, symbol, state)

    def books(self) -> list[tuple[str, str]]:
        """Every ``(venue, symbol)`` known so far."""
        return [(e.venue, e.symbol) for e in self._store.entries()]

    def remote_statistics(self) -> RemoteStats:
        return self._reader.stats


@asynccontextmanager
async def open_remote_books(
    redis_url: str,
    *,
    books: Iterable[tuple[str, str]] | None = None,
    discover_timeout: float = 5.0,
    block_ms: int = BLOCK_MS,
    discover_interval: float = DISCOVER_INTERVAL,
) -> AsyncIterator[RemoteBooks]:
    """Rebuild published books from Redis for the duration of the block.

    ``books``: the ``(venue, symbol)`` pairs to follow (each known at once, ``syncing`` until
    its first snapshot arrives); ``None`` follows every book in ``books:index``, including
    books published later. Entering waits for the first look at the index (at most
    ``discover_timeout`` seconds while Redis is unreachable). Redis failures never escape:
    they are retried with backoff, the books go ``stale`` meanwhile, and are counted in
    :meth:`RemoteBooks.remote_statistics` and per venue in :meth:`Books.statistics`.
    """
    store = BookStore()
    reader = RemoteReader(redis_url, store, None if books is None else list(books), block_ms=block_ms,
                          discover_interval=discover_interval)
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, discover_timeout)
        try:
            yield RemoteBooks(store, reader)
        finally:
            nursery.cancel_scope.cancel()


__all__ = ["RemoteBooks", "RemoteStats", "open_remote_books"]
