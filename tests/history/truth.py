"""The fakes' truth over time, for comparing captured books with it."""

from __future__ import annotations

import bisect

import trio

from trio_books.book import OrderBook, levels_equal

EPOCH_US = 1_796_561_970_000_000  # 2026-12-06T12:59:30Z: a test run crosses an hour boundary


def mock_clock_us() -> int:
    """The capture's clock in these tests: the Trio clock (a MockClock), as epoch µs."""
    return EPOCH_US + round(trio.current_time() * 1e6)


class TruthLog:
    """Every change a fake makes to its true book, with the instant it was made
    (and whether it was sent: a skipped update hides a gap until the next one)."""

    def __init__(self, fake) -> None:
        self.fake = fake
        self.start = {s: (b.top_bids(), b.top_asks()) for s, b in fake.truth.items()}
        self.changes: dict[str, list] = {s: [] for s in fake.symbols}
        real = fake.next_change

        def next_change(symbol):
            skipped = symbol in fake._skip
            bids, asks = real(symbol)
            self.changes[symbol].append((mock_clock_us(), bids, asks, skipped))
            return bids, asks

        fake.next_change = next_change

    def states(self, symbol: str, t: int, slack: int, n: int) -> list[tuple[list, list]]:
        """The true top ``n`` at ``t``, and at every instant of the ``slack`` µs before
        (an update in flight on the socket when the mock clock moved)."""
        book = OrderBook(self.fake.depth)
        book.apply(*self.start[symbol])
        changes = self.changes[symbol]
        times = [c[0] for c in changes]
        out = []
        lo = bisect.bisect_right(times, t - slack)
        for _, bids, asks, _ in changes[:lo]:
            book.apply(bids, asks)
        out.append((book.top_bids(n), book.top_asks(n)))
        for _, bids, asks, _ in changes[lo:bisect.bisect_right(times, t)]:
            book.apply(bids, asks)
            out.append((book.top_bids(n), book.top_asks(n)))
        return out

    def hidden(self, symbol: str, t: int) -> bool:
        """``t`` falls between a skipped update and the next sent one (a gap no client can see yet)."""
        changes = self.changes[symbol]
        i = bisect.bisect_right([c[0] for c in changes], t)
        return i > 0 and changes[i - 1][3]


def equal_any(bids, asks, states) -> bool:
    return any(levels_equal(list(bids), b) and levels_equal(list(asks), a) for b, a in states)
