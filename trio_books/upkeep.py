"""Keeping live books right while they serve: the book task's checks on books
that passed every sequence check (mixed into :class:`~trio_books.keeper.BookKeeper`).

* **Shallow windows.** A window-tracked book (REST venues) whose proven range
  grew shallow is no fault: it stays live and correct (it serves fewer levels)
  while a *shadow* sync buffers its stream and fetches a fresh snapshot; once
  the shadow is synced it replaces the book in one step (counted ``shallow``).
  Venues without REST snapshots rebuild such a book by their own resync.
* **The drift audit** (:mod:`trio_books.audit`): every ``audit_interval`` the
  next live book (rotating) is compared with a fresh snapshot of the venue; a
  difference no event explains is a ``drift`` fault of that book.
"""

from __future__ import annotations

from typing import NamedTuple

import trio

from .audit import Audit, drift
from .errors import AttemptFailure, BookFault, DriftDetected, ShallowBook
from .model import Snapshot
from .sync import SnapshotTooOld


class Fetched(NamedTuple):
    """A REST fetch's outcome on the update channel, tagged with the book's
    resync generation (a fetch overtaken by a resync is dropped) and what it
    was for: ``"sync"`` (the book), ``"shadow"`` (its refresh) or ``"audit"``."""

    gen: int
    symbol: str
    result: Snapshot | BookFault
    purpose: str = "sync"


class LiveUpkeep:
    """The shadow refresh and the drift audit; state lives on the BookKeeper."""

    # --- shallow books: refreshed behind the scenes ---------------------------------------
    def _refresh(self, symbol: str) -> None:
        """A live window-tracked book knows too few levels: a shadow sync buffers
        its stream and fetches a fresh snapshot; the live book serves meanwhile."""
        if not self.rest:  # no REST snapshot: the venue's own resync rebuilds it
            self.fault(ShallowBook(symbol, f"fewer than {self.rt.min_complete_depth} proven levels on a side"))
            return
        self.shadows[symbol] = self._new_sync(symbol)
        self.request_snapshot(symbol, "shadow")

    def _shadow_fetched(self, event: Fetched, touched: set[str]) -> None:
        symbol = event.symbol
        shadow = self.shadows.get(symbol)
        if shadow is None:
            return
        try:
            if isinstance(event.result, BookFault):
                raise event.result
            shadow.on_snapshot(event.result)
        except SnapshotTooOld:
            self.request_snapshot(symbol, "shadow")
            return
        except AttemptFailure as exc:  # the live book is still right: drop the shadow, try again later
            del self.shadows[symbol]
            self.log.debug("{}: refreshing a shallow book failed ({}); it stays live", symbol, exc)
            return
        del self.shadows[symbol]
        self.syncs[symbol] = shadow  # one step: the store serves the fresh book from now on
        if self.entries[symbol].owner is self:
            self.store.publish(self.venue_id, symbol, shadow.book)
        self.entries[symbol].resyncs["shallow"] += 1
        self.rt.stats.book_resyncs["shallow"] += 1
        touched.add(symbol)

    # --- the drift audit (see audit.py) -------------------------------------------------
    async def audit_books(self) -> None:
        """Every ``audit_interval``, audit the next live book (rotating)."""
        turn = 0
        while True:
            await trio.sleep(self.rt.cfg.audit_interval)
            symbols = list(self.syncs)
            for i in range(len(symbols)):
                symbol = symbols[(turn + i) % len(symbols)]
                sync = self.syncs[symbol]
                if sync.live and symbol not in self.fetching and symbol not in self.shadows:
                    turn += i + 1
                    self.audits[symbol] = Audit(self.gen[symbol], sync.update_id)
                    self.request_snapshot(symbol, "audit")
                    break

    def _audit_fetched(self, event: Fetched) -> None:
        symbol = event.symbol
        audit = self.audits.get(symbol)
        if audit is None or audit.gen != event.gen:
            return
        result = event.result
        why = "the snapshot could not be had" if isinstance(result, BookFault) else audit.skip_reason(result)
        if why is not None:
            del self.audits[symbol]
            self.rt.stats.audits["skipped"] += 1
            self.log.debug("{}: audit skipped ({})", symbol, why)
            return
        audit.snapshot = result  # type: ignore[assignment]
        self._audit_when_caught_up(symbol)

    def _audit_when_caught_up(self, symbol: str) -> None:
        """Compare once the book has applied the snapshot's update id."""
        audit = self.audits[symbol]
        snap, sync = audit.snapshot, self.syncs[symbol]
        if snap is None:
            return
        if audit.overflowed:
            del self.audits[symbol]
            self.rt.stats.audits["skipped"] += 1
            return
        if sync.update_id is None or sync.update_id < snap.update_id:  # type: ignore[operator]
            return
        del self.audits[symbol]
        found = drift(sync.book, snap, audit.events)
        if found is None:
            self.rt.stats.audits["passed"] += 1
            return
        self.rt.stats.audits["failed"] += 1
        self.fault(DriftDetected(symbol, f"the venue's snapshot at {snap.update_id} differs at {found}"))

