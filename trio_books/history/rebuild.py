"""Rebuilding a book from captured rows (pure: no I/O).

A captured book is rebuilt exactly as the live one was kept: the same
:class:`~trio_books.book.OrderBook` (same depth, same window tracking), loaded
with a snapshot's levels and proven bounds, then each captured change applied
as one ``apply`` (its levels together, as the venue sent them: truncation to the
depth happens after a whole change, so applying level by level could differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..book import OrderBook, _new_key
from ..model import Level


def load_snapshot(depth: int | None, tracked: bool, bids: Sequence[Level], asks: Sequence[Level],
                  bid_bound: str | None, ask_bound: str | None) -> OrderBook:
    """The book a snapshot row describes, proven bounds included."""
    book = OrderBook(depth, tracked=tracked)
    book.apply(bids, asks)
    for side, price, negate, cache in ((book.bids, bid_bound, False, book._bid_keys), (book.asks, ask_bound, True, book._ask_keys)):
        if price is not None:  # the same key the live book held for its bound
            side.bound = cache.get(price) or _new_key(book, price, negate, cache)
            side.bound_price = price
    return book


def levels(rows: Any) -> list[Level]:
    """``[{"price", "qty"}, …]`` (a list column's value) as level tuples."""
    return [(r["price"], r["qty"]) for r in rows]


__all__ = ["load_snapshot", "levels"]
