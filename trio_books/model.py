"""Normalized events that venue parsers produce and the book task consumes.

Prices and quantities travel as the venue's own decimal text (``Level`` is a
``(price, qty)`` tuple of ``str``); nothing here ever holds a float.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import attrs

Level = tuple[str, str]
"""One price level: ``(price, quantity)`` exactly as the venue wrote them."""


class BookState(enum.Enum):
    """Where a book stands. Only ``LIVE`` books are ever served as data.

    ``STALE``: the book failed a check or its connection ended; it is being
    rebuilt. ``REJECTED``: the venue refused the symbol (its text is the
    book's ``error``); it is retried with a slow backoff."""

    SYNCING = "syncing"
    LIVE = "live"
    STALE = "stale"
    REJECTED = "rejected"


class Verdict(enum.Enum):
    """What a sequencer says about one delta."""

    APPLY = "apply"
    SKIP = "skip"
    GAP = "gap"


class Snapshot(NamedTuple):
    """A full book for one symbol: from REST, or pushed on the socket.

    ``update_id`` is the venue's id that the snapshot ends on (Binance
    ``lastUpdateId``, Bybit ``u``, OKX ``seqId``), when it has one.
    ``checksum`` is the venue's CRC32 for the book after this snapshot, if any.
    ``extra`` carries venue-private data (e.g. Kraken precisions) to the
    venue's own checksum function; the core never looks at it.
    (A NamedTuple: immutable, and cheap to build on the hot path.)
    """

    symbol: str
    bids: Sequence[Level]
    asks: Sequence[Level]
    update_id: int | None = None
    exchange_ts: float | None = None
    checksum: int | None = None
    extra: Any = None


class Delta(NamedTuple):
    """Level changes for one symbol; a quantity that is zero removes the level.

    ``first_id``/``final_id``/``prev_id`` are the venue's chain fields, mapped:
    Binance ``U``/``u``/``pu``, Bybit ``u``/``u``/None, OKX
    ``seqId``/``seqId``/``prevSeqId``. The venue's sequencer reads them.
    """

    symbol: str
    bids: Sequence[Level]
    asks: Sequence[Level]
    first_id: int | None = None
    final_id: int | None = None
    prev_id: int | None = None
    exchange_ts: float | None = None
    checksum: int | None = None
    extra: Any = None


@attrs.frozen(slots=True)
class Reply:
    """A text frame the reader must send back at once (application-level pong)."""

    text: str


@attrs.frozen(slots=True)
class Beat:
    """Evidence that the venue is alive by its own heartbeat rule (pong, server ping,
    heartbeat channel message). Resets the heartbeat watchdog."""


BEAT: Final = Beat()


@attrs.frozen(slots=True)
class Unrequested:
    """A book event for a symbol this connection did not subscribe to: dropped, and
    counted (``ignored["unrequested"]``) so a mis-routed feed is visible."""


UNREQUESTED: Final = Unrequested()


@attrs.frozen(slots=True)
class Unknown:
    """A well-formed frame of a kind this feed does not know (another channel, an
    event it never asked for): dropped, and counted (``ignored["unknown"]``), so a
    venue that starts sending something new is visible, not silently lost."""


UNKNOWN: Final = Unknown()


@attrs.frozen(slots=True)
class Planned:
    """The venue announced that this connection will end (Binance
    ``serverShutdown``, OKX's service-upgrade notice): the supervisor opens the
    replacement first and hands the books over before this one closes."""

    why: str

Event = Snapshot | Delta
Control = Reply | Beat | Unrequested | Unknown | Planned
