"""Order-book microbenchmark (run on request: ``python -m pytest benchmarks -q``).

Prints level updates per second; nothing here asserts a time.
"""

from __future__ import annotations

import random

from trio_books.book import OrderBook


def make_updates(n: int, seed: int = 7) -> list[tuple[list, list]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        bids = [(f"{rng.randint(90_000, 99_999) / 100:.2f}", "0" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1000:.3f}") for _ in range(5)]
        asks = [(f"{rng.randint(100_001, 110_000) / 100:.2f}", "0" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1000:.3f}") for _ in range(5)]
        out.append((bids, asks))
    return out


def make_realistic(n: int, seed: int = 11) -> list[tuple[list, list]]:
    """Binance-like: changes cluster near the top of a 1000-level book; most
    touch existing levels, about one in five removes one."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        bids = [(f"{(100_000 - int(abs(rng.gauss(0, 150))) - 1) / 100:.2f}", "0.000" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1000:.3f}") for _ in range(5)]
        asks = [(f"{(100_000 + int(abs(rng.gauss(0, 150))) + 1) / 100:.2f}", "0.000" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1000:.3f}") for _ in range(5)]
        out.append((bids, asks))
    return out


UPDATES = make_updates(20_000)
REALISTIC = make_realistic(20_000)
LEVELS = sum(len(b) + len(a) for b, a in UPDATES)


def apply_all() -> OrderBook:
    book = OrderBook(depth=1000)
    for bids, asks in UPDATES:
        book.apply(bids, asks)
    return book


def test_level_updates_per_second(benchmark):
    book = benchmark(apply_all)
    assert len(book) > 0
    rate = LEVELS / benchmark.stats["median"]
    print(f"\norder book, high churn (random prices, truncation): {rate:,.0f} level updates/s (median of {benchmark.stats['rounds']} rounds, {LEVELS} levels per round)")


def apply_realistic() -> OrderBook:
    book = OrderBook(depth=1000)
    for bids, asks in REALISTIC:
        book.apply(bids, asks)
    return book


def test_level_updates_per_second_realistic(benchmark):
    book = benchmark(apply_realistic)
    assert len(book) > 0
    rate = LEVELS / benchmark.stats["median"]
    print(f"\norder book, realistic (near-top churn): {rate:,.0f} level updates/s")
