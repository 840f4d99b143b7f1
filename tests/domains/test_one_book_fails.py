"""The book failure domain, on every venue with a per-book resync: a fault in
one of three books on one connection leaves the other two live at every
scheduling point (a Trio instrument checks each step, no sleeps), the faulty
book comes back alone equal to the fake's truth, and the connection never
restarts."""

from __future__ import annotations

import pytest
import trio

from trio_books import load_config_text, open_books
from trio_books.testing.harness import resyncs_alone
from trio_books.testing import fake_for

SYMBOLS = {
    "binance_spot": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "binance_futures": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "asterdex_futures": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "bybit_spot": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "bybit_futures": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "okx_spot": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
    "kraken_spot": ["BTC/USD", "ETH/USD", "SOL/USD"],
}
DEPTH = {"bybit_spot": 50, "bybit_futures": 50, "okx_spot": 400, "kraken_spot": 100}

# (venue, how the fault is injected, the reason it is counted under)
CASES = [(v, "gap", "checksum" if v == "kraken_spot" else "gap") for v in SYMBOLS]
CASES += [("okx_spot", "checksum", "checksum"), ("kraken_spot", "checksum", "checksum")]


def config_for(fake, venue: str):
    extra = {"depth": DEPTH.get(venue, 100), "backoff_base": 0.1, "backoff_cap": 0.2}
    if venue == "okx_spot":
        extra["options"] = None  # no option: the socket-snapshot start
        del extra["options"]
    return load_config_text(fake.config_toml(**extra))


@pytest.mark.parametrize(("venue", "fault", "reason"), CASES, ids=[f"{v}-{f}" for v, f, _ in CASES])
async def test_a_fault_in_one_book_leaves_its_neighbours_live(nursery, autojump_clock, pacer, venue, fault, reason):
    symbols = SYMBOLS[venue]
    fake = await nursery.start(fake_for(venue)(symbols, rate=20, levels=40).serve)
    async with open_books(config_for(fake, venue)) as books:
        with trio.fail_after(60):
            await books.wait_live(venue)
        sick = symbols[1]
        entry = books.store.entry(venue, sick)
        inject = fake.skip_next_update if fault == "gap" else fake.corrupt_checksum_next
        watch, _ = await resyncs_alone(books, fake, venue, sick, lambda: inject(sick))
        assert watch.steps > 20  # the instrument saw the run
        assert watch.not_live == [], watch.not_live[:5]
        assert watch.bad_served == []
        stats = books.statistics()[venue]
        assert stats.attempts == 1 and stats.reconnects == 0, stats.failures
        assert stats.book_resyncs == {reason: 1}
        assert dict(entry.resyncs) == {reason: 1}
        assert fake.connections_accepted == 1
