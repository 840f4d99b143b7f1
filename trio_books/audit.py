"""The drift audit: a live book against a fresh REST snapshot of the venue. Pure.

A book can pass every sequence check and still be wrong (an event lost on the
venue's side with the ids intact, a bug anywhere). Now and then the book task
fetches a snapshot of one live book (rotating over the books, paced by the
venue's request budget) and compares: every level inside both proven ranges
that no event after the snapshot's update id touched must be equal in both.
From the moment the request goes out the book records the prices each applied
event touched; the comparison waits until the book has applied the snapshot's
update id, then leaves out every price an event past that id touched.
"""

from __future__ import annotations

from decimal import Decimal

from .book import OrderBook
from .model import Delta, Level, Snapshot

MAX_RECORDED = 20_000
"""Events recorded for one audit; an audit that would need more is skipped."""


class Audit:
    """One book's audit in flight."""

    __slots__ = ("gen", "since", "events", "snapshot", "overflowed")

    def __init__(self, gen: int, since: int | None) -> None:
        self.gen = gen
        self.since = since  # the book's update id when the request went out
        self.events: list[tuple[int, list[Level], list[Level]]] = []
        self.snapshot: Snapshot | None = None
        self.overflowed = False

    def record(self, delta: Delta) -> None:
        if len(self.events) >= MAX_RECORDED:
            self.overflowed = True
            return
        self.events.append((delta.final_id if delta.final_id is not None else -1, delta.bids, delta.asks))

    def skip_reason(self, snap: Snapshot) -> str | None:
        """Why ``snap`` cannot be compared (None: it can)."""
        if snap.update_id is None:
            return "snapshot without an update id"
        if self.overflowed:
            return f"more than {MAX_RECORDED} events before the snapshot caught up"
        if self.since is not None and snap.update_id < self.since:
            return "snapshot older than the book when the audit began"
        return None


def drift(book: OrderBook, snap: Snapshot, events: list[tuple[int, list[Level], list[Level]]]) -> str | None:
    """The first level where ``book`` and ``snap`` disagree, leaving out prices
    that an event past the snapshot touched; None when they agree."""
    since = snap.update_id if snap.update_id is not None else -1
    for name, side, theirs, bids in (("bid", book.bids, snap.bids, True), ("ask", book.asks, snap.asks, False)):
        touched = {Decimal(p) for final, b, a in events if final > since for p, _ in (b if bids else a)}
        venue = {Decimal(p): Decimal(q) for p, q in theirs if Decimal(q)}
        ours = {Decimal(p): Decimal(q) for p, q in side.values()}
        edges = []  # the worst price of each proven range (a side shorter than the limit is whole)
        if book.depth is not None and len(theirs) >= book.depth and venue:
            edges.append(min(venue) if bids else max(venue))
        if side.bound_price is not None:
            edges.append(Decimal(side.bound_price))
        edge = (max(edges) if bids else min(edges)) if edges else None
        for price in sorted(venue.keys() | ours.keys(), reverse=bids):
            if edge is not None and (price < edge if bids else price > edge):
                break
            if price in touched:
                continue
            if venue.get(price, 0) != ours.get(price, 0):
                return f"{name} {price}: venue {venue.get(price, 0)}, book {ours.get(price, 0)}"
    return None


__all__ = ["Audit", "MAX_RECORDED", "drift"]
