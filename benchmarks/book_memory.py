"""Memory per level of a 1,000-level book on both sides (tracemalloc), fresh and after churn.

    python -m benchmarks.book_memory

Builds books the way the service does (a Binance-style REST snapshot of 1,000
levels per side as ``(price, qty)`` pairs, then depth events as typed tuples),
prices with 2 decimals and quantities with 8 (Binance's spelling), and counts
every byte the book holds — levels, sort keys, the key list and the price-key
cache — per level held. "After churn": events of 5 changes near the top of a
drifting (then a trending) market, so the price-key cache fills with prices
that come and go. Prints bytes per level and the figure for 9 venues × 100 books.
"""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc

from trio_books.book import OrderBook

DEPTH = 1000
BOOKS = 9 * 100


def _qty(rng: random.Random) -> str:
    return f"{rng.randint(1, 5_000_000) / 1e8 * rng.choice((1, 10, 100, 1000)):.8f}"


def snapshot(rng: random.Random, mid: int) -> tuple[list, list]:
    bids = [[f"{(mid - k) / 100:.2f}", _qty(rng)] for k in range(1, DEPTH + 1)]
    asks = [[f"{(mid + k) / 100:.2f}", _qty(rng)] for k in range(1, DEPTH + 1)]
    return bids, asks


def churn(book: OrderBook, rng: random.Random, mid: int, events: int, trend: int = 0) -> None:
    for i in range(events):
        mid += rng.choice((-1, 0, 0, 1)) + (trend if i % 10 == 0 else 0)
        bids, asks = [], []
        for _ in range(5):
            off = int(rng.expovariate(1 / 20)) + 1
            qty = "0.00000000" if rng.random() < 0.25 else _qty(rng)
            # fresh string objects each time, as a parser makes them
            if rng.random() < 0.5:
                bids.append((f"{(mid - off) / 100:.2f}", qty))
            else:
                asks.append((f"{(mid + off) / 100:.2f}", qty))
        book.apply(bids, asks)


def measure(events: int, trend: int = 0, seed: int = 1) -> tuple[float, int]:
    """Bytes per level held, and levels held, of one book after ``events`` events."""
    rng = random.Random(seed)
    mid = 6_500_000
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    bids, asks = snapshot(rng, mid)  # the strings it keeps are counted
    book = OrderBook(DEPTH, tracked=True)
    book.apply_snapshot(bids, asks)
    del bids, asks
    churn(book, rng, mid, events, trend)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    levels = len(book)
    return held / levels, levels


def main() -> int:
    rows = [("fresh (snapshot only)", *measure(0)), ("after 20,000 events", *measure(20_000)),
            ("after 100,000 events of a trending market (the mid moves 10,000 ticks)", *measure(100_000, trend=1))]
    print(f"Order book memory, {DEPTH:,} levels per side (Python {sys.version.split()[0]}; tracemalloc):")
    for name, per_level, levels in rows:
        total = per_level * levels * BOOKS / 2**20
        print(f"- {name}: {per_level:,.0f} bytes per level ({levels:,} levels held); "
              f"9 venues × 100 books × {DEPTH:,} levels per side: {total:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
