"""The supervisor: never gives up, backs off with jitter, shows degraded, isolates failures."""

from __future__ import annotations

import trio

from trio_books import load_config_text, open_books
from trio_books.errors import SequenceGap
from trio_books.supervise import classify, connection_groups
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import converge, free_port, view_top


def test_connection_groups_split_at_the_limit():
    assert connection_groups(["a", "b", "c"], 2) == [("a", "b"), ("c",)]
    assert connection_groups(["a"], 1024) == [("a",)]


def test_classify_finds_the_typed_failure_in_a_group():
    group = ExceptionGroup("x", [ValueError("boom"), ExceptionGroup("y", [SequenceGap("BTC", "gap")])])
    assert classify(group)[:2] == ("gap", "BTC: gap")
    assert classify(KeyError("k"))[0] == "error"


async def test_unreachable_venue_backs_off_degrades_and_never_gives_up(autojump_clock):
    port = free_port()  # nothing listens there
    cfg = load_config_text(f'[venues.binance_spot]\nsymbols = ["BTCUSDT"]\nws_url = "ws://127.0.0.1:{port}"\nrest_url = "http://127.0.0.1:{port}"\n')
    async with open_books(cfg) as books:
        await trio.sleep(300)
        stats = books.statistics()["binance_spot"]
    assert stats.state == "degraded"
    assert stats.failures == {"close": stats.attempts}
    # exponential backoff with a 30 s cap: far fewer attempts than one per second,
    # and still trying at the end (a service never gives up)
    assert 8 <= stats.attempts <= 40
    assert stats.last_error and "cannot connect" in stats.last_error


async def test_one_failing_connection_does_not_disturb_a_healthy_one(nursery):
    good = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=50).serve)
    bad = await nursery.start(FakeBinanceSpot(["ETHUSDT"], rate=50).serve)
    bad.refuse_connections = True
    cfg = load_config_text(good.config_toml(depth=50))
    # two venues is what isolation means; here, with one venue id available in
    # every installation, prove it across two supervisors run side by side
    cfg_bad = load_config_text(bad.config_toml(depth=50, backoff_base=0.05, backoff_cap=0.1))
    async with open_books(cfg) as books, open_books(cfg_bad) as bad_books:
        with trio.fail_after(10):
            await books.wait_live("binance_spot", "BTCUSDT")
        await trio.sleep(1.0)
        assert bad_books.statistics()["binance_spot"].attempts >= 3
        assert books.statistics()["binance_spot"].attempts == 1
        await converge(view_top(books, "binance_spot", "BTCUSDT"), good, "BTCUSDT")


async def test_overflowing_channel_goes_stale_counts_once_and_resyncs(nursery, monkeypatch):
    from trio_books.keeper import BookKeeper

    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=0).serve)
    cfg = load_config_text("[service]\nchannel_capacity = 4\n" + fake.config_toml(depth=100, backoff_base=0.05, backoff_cap=0.1))
    slow = {"on": False}
    original = BookKeeper.run

    class SlowReceive:
        """A deliberately slow book task: it takes 20 ms per batch while slow["on"]."""

        def __init__(self, recv):
            self.recv = recv

        def __aiter__(self):
            return self

        def statistics(self):
            return self.recv.statistics()

        async def __anext__(self):
            if slow["on"]:
                await trio.sleep(0.02)
            return await self.recv.__anext__()

    async def slow_run(self, recv):
        await original(self, SlowReceive(recv))

    monkeypatch.setattr(BookKeeper, "run", slow_run)
    async with open_books(cfg) as books:
        await fake.burst(3)
        with trio.fail_after(10):
            await books.wait_live("binance_spot")
        slow["on"] = True
        await fake.burst(40)
        with trio.fail_after(10):
            while books.statistics()["binance_spot"].failures.get("overflow", 0) == 0:
                await trio.sleep(0.01)
        assert books.state("binance_spot", "BTCUSDT").value in ("stale", "syncing")
        slow["on"] = False
        stats = books.statistics()["binance_spot"]
        assert stats.failures["overflow"] == 1 and stats.resyncs == 1
        with trio.fail_after(10):
            await books.wait_live("binance_spot")
        await converge(view_top(books, "binance_spot", "BTCUSDT"), fake, "BTCUSDT")
