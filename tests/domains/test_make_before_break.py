"""Planned disconnects without a stale moment: the replacement connection is
opened first, syncs every book privately, catches up with the old one's update
ids, and takes over in one step; only then is the old connection closed.
Readers never see a non-live book and never see one go backwards."""

from __future__ import annotations

import pytest
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


ANNOUNCEMENTS = {
    "binance_spot": '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
    "binance_futures": '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
    "okx_spot": '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}',
}


@pytest.mark.parametrize("vid", sorted(ANNOUNCEMENTS))
async def test_an_announced_disconnect_is_replaced_before_the_venue_cuts(vid, nursery, autojump_clock, pacer):
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT"] if vid == "okx_spot" else SYMBOLS
    fake = await nursery.start(fake_for(vid)(symbols, rate=20, levels=40).serve)
    cfg = load_config_text(fake.config_toml(depth=100 if vid != "okx_spot" else 400))
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            await books.wait_live(vid)
        (old,) = fake.clients
        with LiveWatch(books.store, vid, symbols, served_ok=never_backwards()) as watch:
            await old.send(ANNOUNCEMENTS[vid])
            with trio.fail_after(60):
                while books.statistics()[vid].failures.get("planned", 0) == 0:
                    await trio.sleep(0.1)
            assert old.closed  # we closed it ourselves, once the new one served
            await recover(books, fake, vid)
        assert watch.not_live == [] and watch.bad_served == []
        stats = books.statistics()[vid]
        assert stats.failures == {"planned": 1} and fake.connections_accepted == 2


async def test_two_hundred_books_change_connection_without_a_stale_or_backwards_read(nursery, autojump_clock, pacer):
    """At scale the two connections' books are never all at the same ids at once:
    each book passes over as soon as it reached the old one's update id."""
    symbols = [f"S{i:03d}USDT" for i in range(200)]
    fake = await nursery.start(fake_for("binance_spot")(symbols, rate=2, levels=10).serve)
    cfg = load_config_text(fake.config_toml(depth=20, lifetime=20, audit_interval=0))  # replaced at 18 s
    async with open_books(cfg) as books:
        with trio.fail_after(120):
            await books.wait_live("binance_spot")
        with LiveWatch(books.store, "binance_spot", symbols, served_ok=never_backwards()) as watch:
            with trio.fail_after(300):
                while books.statistics()["binance_spot"].failures.get("planned", 0) < 1:
                    await trio.sleep(1)
        assert watch.not_live == [] and watch.bad_served == [], (watch.not_live[:3], watch.bad_served[:3])
        assert books.statistics()["binance_spot"].failures == {"planned": 1} and len(fake.clients) == 1
