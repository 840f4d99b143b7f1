"""Per-symbol book synchronisation: buffer, snapshot, sequence, apply, verify.

Pure (no Trio, no I/O): the session feeds it events in order and it either
applies them, or raises the :class:`~trio_books.errors.AttemptFailure` that
ends the attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .book import OrderBook
from .errors import ChecksumMismatch, CrossedBook, SequenceGap
from .model import Delta, Snapshot, Verdict
from .venues import Sequencer

MAX_BUFFERED = 50_000
"""Deltas held per symbol while a REST snapshot is in flight; more is an overflow."""


class SnapshotTooOld(Exception):
    """The REST snapshot ended before the buffered stream began: fetch another."""


class SymbolSync:
    """One symbol's book during one attempt.

    ``rest`` says where snapshots come from: with REST, deltas are buffered until
    the snapshot arrives, then replayed through the sequencer (the venue's
    documented algorithm); with socket snapshots, deltas before the first
    snapshot are ignored (the book is not live and the snapshot replaces it).

    ``min_depth`` (window-tracked books, see :class:`~trio_books.book.OrderBook`):
    when a side's proven range holds fewer levels than this after a change,
    ``shallow`` turns True and the book task fetches a fresh snapshot for it
    (the book stays correct meanwhile: it only serves fewer levels).
    """

    __slots__ = ("symbol", "book", "sequencer", "verify", "rest", "live", "buffer", "update_id", "exchange_ts", "ignored",
                 "min_depth", "shallow")

    def __init__(
        self,
        symbol: str,
        depth: int | None,
        sequencer: Sequencer,
        verify: Callable[[OrderBook, Snapshot | Delta], bool],
        rest: bool,
        ignored: Counter | None = None,
        *,
        tracked: bool = False,
        min_depth: int = 0,
    ) -> None:
        self.symbol = symbol
        self.book = OrderBook(depth, tracked=tracked)
        self.min_depth = min_depth if self.book.tracked else 0
        self.shallow = False
        self.sequencer = sequencer
        self.verify = verify
        self.rest = rest
        self.live = False
        self.buffer: list[Delta] = []
        self.update_id: int | None = None
        self.exchange_ts: float | None = None
        # deltas dropped without failing, by reason (shared with the venue's statistics)
        self.ignored: Counter = Counter() if ignored is None else ignored

    def on_delta(self, delta: Delta) -> bool:
        """Apply ``delta`` if the chain allows; True when the book changed."""
        if not self.live:
            if self.rest:
                if len(self.buffer) >= MAX_BUFFERED:
                    raise SequenceGap(self.symbol, f"{MAX_BUFFERED} deltas buffered and no snapshot yet")
                self.buffer.append(delta)
            else:  # the socket snapshot that comes will replace the book
                self.ignored["before_snapshot"] += 1
            return False
        verdict = self.sequencer.check(delta)
        if verdict is Verdict.APPLY:
            self._apply(delta)
            return True
        if verdict is Verdict.SKIP:
            self.ignored["already_applied"] += 1
            return False
        raise SequenceGap(self.symbol, f"gap at {_ids(delta)}")

    def on_snapshot(self, snap: Snapshot) -> bool:
        """Load ``snap`` (and replay the buffer). Raises :class:`SnapshotTooOld`."""
        buffered = self.buffer
        if not self.sequencer.on_snapshot(snap, buffered):
            raise SnapshotTooOld(self.symbol)
        self.book.apply_snapshot(snap.bids, snap.asks)
        self.update_id = snap.update_id
        if snap.exchange_ts is not None:
            self.exchange_ts = snap.exchange_ts
        if snap.checksum is not None and not self.verify(self.book, snap):
            raise ChecksumMismatch(self.symbol, f"snapshot checksum {snap.checksum} does not match")
        self._check_crossed()
        self.buffer = []
        self.live = True
        for delta in buffered:
            verdict = self.sequencer.check(delta)
            if verdict is Verdict.APPLY:
                self._apply(delta)
            elif verdict is Verdict.GAP:
                raise SequenceGap(self.symbol, f"buffered stream does not continue the snapshot at {_ids(delta)}")
            else:  # buffered events the snapshot already contains: the documented drop
                self.ignored["already_applied"] += 1
        return True

    def _apply(self, delta: Delta) -> None:
        book = self.book
        book.apply(delta.bids, delta.asks)
        if delta.final_id is not None:
            self.update_id = delta.final_id
        if delta.exchange_ts is not None:
            self.exchange_ts = delta.exchange_ts
        if delta.checksum is not None and not self.verify(book, delta):
            raise ChecksumMismatch(self.symbol, f"checksum {delta.checksum} does not match at {_ids(delta)}")
        if book.is_crossed():
            self._crossed()
        if self.min_depth:
            bids, asks = book.bids, book.asks
            if (bids.bound is not None and bids.complete_depth() < self.min_depth) or (
                    asks.bound is not None and asks.complete_depth() < self.min_depth):
                self.shallow = True

    def _check_crossed(self) -> None:
        if self.book.is_crossed():
            self._crossed()

    def _crossed(self) -> None:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        raise CrossedBook(self.symbol, f"crossed book, best bid {bid and bid[0]} >= best ask {ask and ask[0]}")


def _ids(delta: Delta) -> str:
    parts = [f"{name}={value}" for name, value in (("first", delta.first_id), ("final", delta.final_id), ("prev", delta.prev_id)) if value is not None]
    return ", ".join(parts) or "an update"
