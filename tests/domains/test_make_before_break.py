"""Planned disconnects without a stale moment: the replacement connection is
opened first, syncs every book privately, catches up with the old one's update
ids, and takes over in one step; only then is the old connection closed.
Readers never see a non-live book and never see one go backwards."""

from __future__ import annotations

import trio

from trio_books import load_config_text, open_books
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, recover

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def never_backwards():
    """A ``served_ok`` predicate: each book's seq and update id only grow."""
    seen: dict[str, tuple[int, int]] = {}

    def ok(e) -> bool:
        now = (e.seq, e.update_id if e.update_id is not None else -1)
        last = seen.get(e.symbol, now)
        seen[e.symbol] = max(last, now)
        return now[0] >= last[0] and now[1] >= last[1]

    return ok


async def test_a_connection_nearing_its_lifetime_is_replaced_without_a_stale_read(nursery, autojump_clock, pacer):
    fake = await nursery.start(fake_for("binance_spot")(SYMBOLS, rate=20, levels=40).serve)
    cfg = load_config_text(fake.config_toml(depth=100, lifetime=120))  # replaced at 108 s (a tenth early)
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live("binance_spot")
        started = trio.current_time()
        with LiveWatch(books.store, "binance_spot", SYMBOLS, served_ok=never_backwards()) as watch:
            with trio.fail_after(300):
                while books.statistics()["binance_spot"].failures.get("planned", 0) < 2:
                    await trio.sleep(1)
            await recover(books, fake, "binance_spot")
        elapsed = trio.current_time() - started
        assert watch.steps > 1000
        assert watch.not_live == [] and watch.bad_served == []
        stats = books.statistics()["binance_spot"]
        assert stats.failures == {"planned": 2} and stats.attempts == 3
        assert fake.connections_accepted == 3 and len(fake.clients) == 1  # the old ones were closed
        assert 200 <= elapsed <= 230
