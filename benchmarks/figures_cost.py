"""What the derived figures cost to compute: ``BookView.stats()`` and ``.cost()``
on books of 100, 1,000 and 5,000 levels a side (every level inside the widest
band: the worst case). ``python -m benchmarks.figures_cost``; prints ms per call."""

from __future__ import annotations

import random
import time

from trio_books.model import BookState
from trio_books.store import BookView


def book(levels: int, rng: random.Random) -> BookView:
    """Prices 0.01 apart around 100000 (a whole BTC book sits within 10 bps of its mid)."""
    def side(sign: int):
        return tuple((f"{100_000 + sign * i / 100:.2f}", f"{rng.randint(1, 10**6) / 10**5:.5f}") for i in range(1, levels + 1))
    return BookView("bench", "BTCUSDT", BookState.LIVE, side(-1), side(1), 1, None, None, None)


def per_call(fn, budget: float = 0.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        fn()
        n += 1
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    rng = random.Random(7)
    print(f"{'levels/side':>11} {'stats':>9} {'cost 10 base':>13} {'cost 1M quote':>14} {'insufficient':>13}   (ms per call)")
    for levels in (100, 1000, 5000):
        v = book(levels, rng)
        row = [per_call(v.stats), per_call(lambda: v.cost("buy", base="10")),
               per_call(lambda: v.cost("sell", quote="1000000")), per_call(lambda: v.cost("buy", base="1000000"))]
        print(f"{levels:>11} " + " ".join(f"{x:>{w}.3f}" for x, w in zip(row, (9, 13, 14, 13))))


if __name__ == "__main__":
    main()
