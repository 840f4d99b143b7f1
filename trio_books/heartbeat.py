"""The one coroutine that enforces a venue's :class:`~trio_books.venues.Heartbeat`."""

from __future__ import annotations

import attrs
import trio

from .errors import NoPong, StaleFeed
from .transport import Connection
from .venues import Heartbeat


@attrs.define
class Liveness:
    """Written by the read loop, read by the heartbeat task (trio clock times)."""

    last_frame: float
    last_beat: float


async def enforce_heartbeat(conn: Connection, policy: Heartbeat, live: Liveness) -> None:
    """Run the watchdog and the pinger of ``policy``; raise :class:`StaleFeed` when the
    venue breaks its rule. Returns only if the policy has nothing to enforce."""
    try:
        async with trio.open_nursery() as nursery:
            if policy.watchdog:
                nursery.start_soon(_watchdog, policy, live)
            if policy.ping_interval:
                nursery.start_soon(_pinger, conn, policy, live)
    except* StaleFeed as group:
        # both rules broken in the same step: one failure, the venue's documented watchdog first
        raise sorted(group.exceptions, key=lambda e: isinstance(e, NoPong))[0] from None


async def _watchdog(policy: Heartbeat, live: Liveness) -> None:
    limit = policy.watchdog
    on_beat = policy.watchdog_on == "beat"
    what = "heartbeat" if on_beat else "frame"
    while True:
        last = live.last_beat if on_beat else live.last_frame
        deadline = last + limit
        if trio.current_time() >= deadline:
            raise StaleFeed(f"no {what} for {limit:g} s")
        await trio.sleep_until(deadline)


async def _pinger(conn: Connection, policy: Heartbeat, live: Liveness) -> None:
    """Send a ping every ``ping_interval`` (or after that long without a frame);
    the answer is checked once, at its deadline: one wake-up per ping, no polling."""
    interval = policy.ping_interval
    assert interval
    next_ping = trio.current_time() + interval
    while True:
        if policy.ping_when_idle:
            # Ping only after `interval` without any frame (OKX's rule).
            while (idle_until := live.last_frame + interval) > trio.current_time():
                await trio.sleep_until(idle_until)
        else:
            await trio.sleep_until(next_ping)
        sent = trio.current_time()
        next_ping = sent + interval
        if policy.ping_text is None:
            try:
                with trio.fail_after(policy.pong_timeout):
                    await conn.ping()
            except trio.TooSlowError:
                raise NoPong(f"no pong within {policy.pong_timeout:g} s") from None
            continue
        await conn.send(policy.ping_text)
        await trio.sleep_until(sent + policy.pong_timeout)  # the read loop notes the answer in `live`
        answer = live.last_beat if policy.pong_on == "beat" else live.last_frame
        if answer < sent:
            await trio.lowlevel.checkpoint()  # a watchdog due at this same moment speaks first
            raise NoPong(f"no pong within {policy.pong_timeout:g} s")
