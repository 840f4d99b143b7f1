"""The Redis Streams layout that the sink writes and :mod:`trio_books.remote` reads.

Layout (``{venue}``/``{symbol}`` are the venue id and the venue's own symbol)::

    books:{venue}:{symbol}:updates     stream: every message of the book, in order
    books:{venue}:{symbol}:snapshots   stream: the latest few full snapshots (exact MAXLEN 5)
    books:index                        hash: "{venue}:{symbol}" -> JSON {venue, symbol, shard, publisher, updates, snapshots, depth}
    books:publisher:{publisher}        string with a 5 s TTL, refreshed every second while the sink runs

Each stream entry is a flat map of text fields:

* ``type``: ``snapshot`` (a full top-``depth`` book, or an empty one with a state other than live)
  or ``update`` (the levels that changed since the previous message; quantity ``"0"`` removes);
* ``seq``: this book's message number, 1, 2, 3 … per ``publisher``. A consumer that sees a
  number skipped (or a new ``publisher``) has missed something and re-reads the latest snapshot;
* ``publisher``: one id per sink run (the sequence starts again with a new id);
* ``state`` (snapshots): ``live``, ``syncing``, ``stale`` or ``rejected``: every state change is a snapshot,
  so a consumer always knows when a book is not live;
* ``bids``/``asks``: JSON arrays of ``[price, qty]``, the venue's exact decimal strings;
* ``version`` (the book's own change counter), ``update_id``, ``exchange_ts``, ``received_ts``,
  ``ts`` (wall clock when published).

A snapshot is written to both streams at once (by the sink's batch script); its copy in the
``snapshots`` stream has an extra field ``uid``, the id of the same message in ``updates``, so
a consumer starts from the latest snapshot and reads ``updates`` after ``uid``.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ..model import Level

PREFIX: Final = "books"
INDEX_KEY: Final = f"{PREFIX}:index"
SNAPSHOTS_KEPT: Final = 5
"""Exact MAXLEN of each ``snapshots`` stream (a consumer only needs the latest)."""


def book_key(venue: str, symbol: str) -> str:
    return f"{PREFIX}:{venue}:{symbol}"


def stream_keys(venue: str, symbol: str) -> tuple[str, str]:
    """``(updates, snapshots)`` stream keys of one book."""
    base = book_key(venue, symbol)
    return f"{base}:updates", f"{base}:snapshots"


def publisher_key(publisher: str) -> str:
    return f"{PREFIX}:publisher:{publisher}"


def redacted(url: str) -> str:
    """The URL without its password (for logs and stats)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


# --- exact differences of top-N levels -------------------------------------------------


def diff_side(old: list[Level], new: list[Level]) -> list[Level]:
    """Levels that turn ``old`` into ``new``, removals first (quantity ``"0"``), then changed
    or added levels as they are now. Keyed by the price text: a new spelling of a price
    (``"1.10"`` → ``"1.1"``) is a removal of the old text and an addition of the new, which a
    book keyed by value applies correctly because the removal comes first."""
    if old == new:
        return []
    olds = set(old)
    came = [level for level in new if level not in olds]
    news = set(new)
    came_prices = {level[0] for level in came}
    out: list[Level] = [(p, "0") for p, q in old if (p, q) not in news and p not in came_prices]
    out.extend(came)
    return out
