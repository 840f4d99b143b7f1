"""Typed failures. Each one raised inside a connection attempt ends that attempt;
the supervisor counts it under its ``reason`` and starts a fresh one."""

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


class SequenceGap(AttemptFailure):
    reason = "gap"


class ChecksumMismatch(AttemptFailure):
    reason = "checksum"


class CrossedBook(AttemptFailure):
    reason = "crossed"


class StaleFeed(AttemptFailure):
    reason = "heartbeat"


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

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
