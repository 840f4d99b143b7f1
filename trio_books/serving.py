"""Which connection's book is served (mixed into :class:`~trio_books.keeper.BookKeeper`).

Several attempts can keep the same books at once: the one serving, a
replacement syncing before a planned disconnect (make-before-break), a hot
standby (``redundancy = 2``). They form a ``group``; each store entry's
``owner`` is the book task whose book is served. A book goes to a task that
has it live: when it goes live and nobody serves it live, when a replacement
takes over, and — in the same scheduling step — when its owner's book fails a
check or its owner's connection ends. Only when no task of the group has it
live does a book go stale.
"""

from __future__ import annotations

import contextlib

import trio

from .errors import Disagreement
from .model import BookState

COMPARED = 10
"""Hot standby: top levels per side compared between two connections' books."""


class Serving:
    """Ownership of the served books; state lives on the BookKeeper."""

    def _behind(self, symbol: str, other: "Serving") -> bool:
        """This book has not yet reached ``other``'s update id for it (ids that one
        connection and the next share, as the venues' per-symbol ids are)."""
        mine, theirs = self.syncs[symbol], other.syncs.get(symbol)
        if not self.shared_ids or theirs is None or not theirs.live or theirs.update_id is None:
            return False
        return not mine.live or mine.update_id is None or mine.update_id < theirs.update_id

    def _claim(self, symbol: str) -> None:
        """Serve this keeper's live book of ``symbol`` from now on (one step)."""
        entry, sync = self.entries[symbol], self.syncs[symbol]
        entry.owner = self
        self.store.publish(self.venue_id, symbol, sync.book)
        self.store.set_state(self.venue_id, [symbol], BookState.LIVE)
        self.store.touched(entry, sync.update_id, sync.exchange_ts)

    def _live_peer(self, symbol: str) -> "Serving | None":
        for peer in self.group:
            if peer is not self and peer.syncs[symbol].live:
                return peer
        return None

    def take_over(self, old: "Serving | None" = None) -> int:
        """Serve the books live here (a planned hand-over, each book in one step);
        with ``old``, only those that reached its update id, so that no book goes
        back. Returns how many books are left behind."""
        left = 0
        for symbol, sync in self.syncs.items():
            if not sync.live or self.entries[symbol].owner is self:
                continue
            if old is not None and self._behind(symbol, old):
                left += 1
            else:
                self._claim(symbol)
        return left

    def release(self, why: str | None = None) -> None:
        """This connection ends: each book it serves passes to a connection that
        has it live, in the same step, or goes stale."""
        if self in self.group:  # a dying connection is nobody's peer any more
            self.group.remove(self)
        stale = []
        for symbol, entry in self.entries.items():
            if entry.owner is self:
                peer = self._live_peer(symbol)
                if peer is not None:
                    peer._claim(symbol)
                else:
                    entry.owner = None
                    stale.append(symbol)
        self.store.set_state(self.venue_id, stale, BookState.STALE, error=why)

    def _compare_with_peers(self, touched: set[str]) -> None:
        """Hot standby: two live books at the same update id must agree on their
        top levels; when they do not, both are faults (``disagree``)."""
        for symbol in touched:
            mine = self.syncs[symbol]
            for peer in self.group:
                theirs = peer.syncs[symbol] if peer is not self else None
                if theirs is None or not (mine.live and theirs.live) or mine.update_id is None or mine.update_id != theirs.update_id:
                    continue
                if mine.book.top_bids(COMPARED) != theirs.book.top_bids(COMPARED) or \
                        mine.book.top_asks(COMPARED) != theirs.book.top_asks(COMPARED):
                    fault = Disagreement(symbol, f"two connections disagree at update id {mine.update_id}")
                    entry = self.entries[symbol]
                    if entry.owner is self or entry.owner is peer:  # the served copy is one of the two: not live from this step
                        entry.owner = None
                        self.store.set_state(self.venue_id, [symbol], BookState.STALE, error=f"{fault.reason}: {fault}")
                    with contextlib.suppress(trio.WouldBlock):  # (a full channel: the peer overflows and restarts anyway)
                        peer.updates.send_nowait([fault])  # the peer's book task faults its own book, in order
                        peer.backlog.put += 1
                    self.fault(fault)
                    return

