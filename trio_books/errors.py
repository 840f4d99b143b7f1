"""Typed failures, in two failure domains.

* Connection faults (:class:`AttemptFailure` and its subclasses other than
  :class:`BookFault`): raised inside a connection attempt they end the attempt
  as a whole; the supervisor counts it under its ``reason`` and starts a fresh one.
* Book faults (:class:`BookFault`): one book failed a check, could not be
  synced, or was refused by the venue. The book task marks that book not live
  and resyncs it alone; every other book of the connection stays live.
"""

from __future__ import annotations


class TrioBooksError(Exception):
    """Base class of every error trio-books raises on purpose."""


class ConfigError(TrioBooksError):
    """A configuration problem, as one line naming the key (``a.b.c: problem``)."""


class NotLive(TrioBooksError):
    """A book was asked for while it is not live (syncing or stale)."""

    def __init__(self, venue: str, symbol: str, state: str) -> None:
        super().__init__(f"{venue}/{symbol} is {state}, not live")
        self.venue, self.symbol, self.state = venue, symbol, state


class UnknownBook(TrioBooksError, KeyError):
    """No such venue or symbol is configured."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown book"


class AttemptFailure(TrioBooksError):
    """Base of the failures that end one connection attempt."""

    reason: str = "error"


class BookFault(AttemptFailure):
    """A fault of one book (``symbol``): that book alone is resynced.

    Parsers raise it (or return it among their items, for frames that carry
    several symbols); the read loop hands it to the book task in order with
    the events around it."""

    def __init__(self, symbol: str, message: str) -> None:
        super().__init__(f"{symbol}: {message}")
        self.symbol = symbol


class SequenceGap(BookFault):
    """A break in one book's update-id chain."""

    reason = "gap"


class ChecksumMismatch(BookFault):
    reason = "checksum"


class CrossedBook(BookFault):
    reason = "crossed"


class SymbolRejected(BookFault):
    """The venue refused one symbol (unknown, delisted, wrong notation): the book
    is reported ``rejected`` with the venue's text and retried with a slow backoff."""

    reason = "rejected"


class SnapshotUnusable(BookFault):
    """One symbol's REST snapshot could not be fetched or parsed."""

    reason = "snapshot"


class ShallowBook(BookFault):
    """A window-tracked book provably knows fewer levels than promised on a side
    (venues without a REST snapshot rebuild it this way; REST venues refresh it
    behind the scenes without a fault)."""

    reason = "shallow"


class DriftDetected(BookFault):
    """The drift audit found a level where the live book and a fresh snapshot of
    the venue disagree although no event since the snapshot touched it."""

    reason = "drift"


class Disagreement(BookFault):
    """Hot standby: two connections' live books at the same update id differ."""

    reason = "disagree"


class ConnectionGap(AttemptFailure):
    """A break in a connection-wide sequence (Coinbase ``sequence_num``): every
    book of the connection may have missed an event."""

    reason = "gap"


class ResyncLimit(AttemptFailure):
    """One book needed too many resyncs within the window: a systematic fault
    must not hide behind per-book retries, so the whole connection restarts."""

    reason = "resync_limit"


class StaleFeed(AttemptFailure):
    reason = "heartbeat"


class NoPong(StaleFeed):
    """No answer to our ping within the venue's pong timeout."""


def first_failure(exc: BaseException) -> BaseException:
    """The exception that explains ``exc``: its first :class:`AttemptFailure` leaf
    (exception groups unwrapped), else its first leaf."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
        else:
            leaves.append(e)

    walk(exc)
    return next((e for e in leaves if isinstance(e, AttemptFailure)), leaves[0] if leaves else exc)


class ChannelOverflow(AttemptFailure):
    reason = "overflow"


class BadFrame(AttemptFailure):
    """A frame that is not valid for the venue's protocol (malformed, truncated,
    wrong types, impossible values)."""

    reason = "bad_frame"


class VenueRejected(AttemptFailure):
    """The venue refused a subscription or reported an error."""

    reason = "rejected"


class VenueClosed(AttemptFailure):
    """The venue closed the connection or announced it will (e.g. serverShutdown)."""

    reason = "close"


class SnapshotFailed(AttemptFailure):
    """A REST snapshot could not be had (HTTP error, 429/418, bad body)."""

    reason = "snapshot"

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
