"""Captured books: Parquet files of every change and snapshot, and books at any instant.

Capture with ``trio-books capture --config … --out DIR`` or a ``[sinks.parquet]``
section (:mod:`trio_books.sinks.parquet`); read with::

    import trio_books.history
    h = trio_books.history.open("DIR")
    book = h.book_at("binance_spot", "BTCUSDT", "2026-12-06T13:45:00Z", depth=10)
    for book in h.iter_books("binance_spot", "BTCUSDT", start, end, every=1.0): ...
    for batch in h.changes("binance_spot", "BTCUSDT", start, end): ...   # pyarrow.RecordBatch

Needs pyarrow: ``pip install "trio-books[history]"``.
"""

from __future__ import annotations

import os

try:
    import pyarrow  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError('trio_books.history needs pyarrow: pip install "trio-books[history]"') from None

from .reader import Gap, History, HistoryError, InGap, NotCaptured, PastBook


def open(root: str | os.PathLike) -> History:  # noqa: A001 - the name the API promises
    """Open a capture directory for reading (raises :class:`HistoryError` if it is not one)."""
    return History(root)


__all__ = ["Gap", "History", "HistoryError", "InGap", "NotCaptured", "PastBook", "open"]
