"""Heartbeat rules and the read loop, without sockets, on a MockClock."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import trio

from trio_books.errors import ChannelOverflow, StaleFeed
from trio_books.heartbeat import Liveness, enforce_heartbeat
from trio_books.venues import Heartbeat


@contextmanager
def raises_stale(match: str = ""):
    """StaleFeed, alone or inside the exception group of a nursery."""
    caught = []
    try:
        yield
    except* StaleFeed as group:
        stack = list(group.exceptions)
        while stack:
            exc = stack.pop(0)
            if isinstance(exc, BaseExceptionGroup):
                stack.extend(exc.exceptions)
            else:
                caught.append(exc)
    assert caught, "StaleFeed was not raised"
    assert match in str(caught[0]), str(caught[0])


class ScriptedConn:
    """A Connection double: records what was sent; ping() answers unless told not to."""

    def __init__(self, answer_pings: bool = True) -> None:
        self.sent: list[str] = []
        self.pings = 0
        self.answer_pings = answer_pings

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def ping(self) -> None:
        self.pings += 1
        if not self.answer_pings:
            await trio.sleep_forever()

    async def receive_batch(self):
        await trio.sleep_forever()


async def test_watchdog_trips_after_exactly_the_limit(autojump_clock):
    live = Liveness(0.0, 0.0)
    with raises_stale("no frame for 60 s"):
        await enforce_heartbeat(ScriptedConn(), Heartbeat(watchdog=60), live)
    assert trio.current_time() == pytest.approx(60)


async def test_a_frame_moves_the_watchdog(autojump_clock):
    live = Liveness(0.0, 0.0)

    async def frame_at_59():
        await trio.sleep(59)
        live.last_frame = trio.current_time()

    with raises_stale():
        async with trio.open_nursery() as n:
            n.start_soon(frame_at_59)
            await enforce_heartbeat(ScriptedConn(), Heartbeat(watchdog=60), live)
    assert trio.current_time() == pytest.approx(119)


async def test_beat_watchdog_ignores_ordinary_frames(autojump_clock):
    live = Liveness(0.0, 0.0)

    async def frames_keep_coming():
        while True:
            await trio.sleep(1)
            live.last_frame = trio.current_time()

    with raises_stale("no heartbeat for 60 s"):
        async with trio.open_nursery() as n:
            n.start_soon(frames_keep_coming)
            await enforce_heartbeat(ScriptedConn(), Heartbeat(watchdog=60, watchdog_on="beat"), live)
    assert trio.current_time() == pytest.approx(60)


async def test_app_ping_without_pong_ends_attempt(autojump_clock):
    conn = ScriptedConn()
    live = Liveness(0.0, 0.0)
    with raises_stale("no pong within 10 s"):
        await enforce_heartbeat(conn, Heartbeat(watchdog=None, ping_interval=30, ping_text='{"method":"ping"}', pong_timeout=10), live)
    assert conn.sent == ['{"method":"ping"}']
    assert 40 <= trio.current_time() <= 40.1


async def test_app_ping_answered_keeps_going(autojump_clock):
    conn = ScriptedConn()
    live = Liveness(0.0, 0.0)

    async def answer():
        seen = 0
        while True:
            await trio.sleep(0.5)
            if len(conn.sent) > seen:
                seen = len(conn.sent)
                live.last_beat = trio.current_time()

    with trio.move_on_after(200):
        async with trio.open_nursery() as n:
            n.start_soon(answer)
            await enforce_heartbeat(conn, Heartbeat(watchdog=None, ping_interval=30, ping_text="p", pong_timeout=10), live)
    assert len(conn.sent) == 6


async def test_pinger_wakes_once_per_ping_and_once_per_answer_deadline(autojump_clock):
    """No polling: an answered application ping costs the heartbeat task a fixed
    number of steps (wake to send, the send, the answer's deadline), however
    late within the timeout the answer comes."""
    conn = ScriptedConn()
    live = Liveness(0.0, 0.0)
    steps = []

    class CountPinger(trio.abc.Instrument):
        def before_task_step(self, task):
            if task.name.endswith("_pinger"):
                steps.append(trio.current_time())

    async def answer_late():
        seen = 0
        while True:
            await trio.sleep(4)  # answers up to 4 s after the ping (pong_timeout 10)
            if len(conn.sent) > seen:
                seen = len(conn.sent)
                live.last_beat = trio.current_time()

    trio.lowlevel.add_instrument(CountPinger())
    with trio.move_on_after(305):
        async with trio.open_nursery() as n:
            n.start_soon(answer_late)
            await enforce_heartbeat(conn, Heartbeat(watchdog=None, ping_interval=30, ping_text="p", pong_timeout=10), live)
    assert len(conn.sent) == 10  # every 30 s on the dot: 30, 60, … 300
    assert len(steps) <= 3 * len(conn.sent) + 2


async def test_ws_ping_timeout(autojump_clock):
    conn = ScriptedConn(answer_pings=False)
    with raises_stale():
        await enforce_heartbeat(conn, Heartbeat(watchdog=None, ping_interval=10, pong_timeout=5), Liveness(0.0, 0.0))
    assert trio.current_time() == pytest.approx(15)


async def test_idle_ping_only_when_quiet(autojump_clock):
    conn = ScriptedConn()
    live = Liveness(0.0, 0.0)

    async def busy_then_quiet():
        for _ in range(100):  # a frame every second for 100 s
            await trio.sleep(1)
            live.last_frame = trio.current_time()

    with raises_stale():
        async with trio.open_nursery() as n:
            n.start_soon(busy_then_quiet)
            await enforce_heartbeat(conn, Heartbeat(watchdog=None, ping_interval=25, ping_text="ping", ping_when_idle=True, pong_timeout=5, pong_on="any"), live)
    assert conn.sent == ["ping"]  # nothing while frames flowed
    assert trio.current_time() == pytest.approx(130)  # quiet from 100, ping at 125, no answer by 130


async def test_read_loop_overflow_is_an_error_not_a_skip(autojump_clock):
    from trio_books.config import ServiceConfig, VenueConfig
    from trio_books.session import VenueRuntime, _read_loop
    from trio_books.store import BookStore
    from trio_books.venues import get_venue

    frame = '{"stream":"x@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[],"a":[]}}'

    class Burst(ScriptedConn):
        async def receive_batch(self):
            await trio.lowlevel.checkpoint()
            return [frame]

    store = BookStore([("binance_spot", "BTCUSDT")])
    venue = get_venue("binance_spot")
    rt = VenueRuntime(venue, VenueConfig(symbols=("BTCUSDT",)), ServiceConfig(channel_capacity=3), store, store.venues["binance_spot"])
    from trio_books.venues import ConnectionSpec

    proto = venue.connect(ConnectionSpec("ws://x", "http://x", ("BTCUSDT",), 100))
    send, recv = trio.open_memory_channel(3)
    with pytest.raises(ChannelOverflow):
        await _read_loop(Burst(), proto, send, Liveness(0.0, 0.0), rt)
    assert recv.statistics().current_buffer_used == 3
    assert rt.stats.channel_high_water == 3


async def test_both_rules_broken_in_one_step_are_one_failure_the_watchdogs(autojump_clock):
    """A ping sent as the last frame arrived: its pong deadline and the frame watchdog
    fall in the same step. One StaleFeed comes out, not an exception group (which
    the attempt's books would have shown as "error: ExceptionGroup")."""
    policy = Heartbeat(watchdog=10, ping_interval=30, ping_text="ping", pong_timeout=10)
    live = Liveness(30.0, 0.0)  # a frame at the moment the ping goes out, never its answer
    with pytest.raises(StaleFeed, match="no frame for 10 s"):
        await enforce_heartbeat(ScriptedConn(), policy, live)
    assert trio.current_time() == pytest.approx(40)
