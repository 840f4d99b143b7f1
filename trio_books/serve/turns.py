"""Turns for the server's hot reads: at most ``per_round`` answers per Trio
scheduler round, so a round never holds more than that many readers' work and
the feeds keep their pace (README, "Performance", "Reads").

The budget is renewed after each I/O wait (a Trio instrument, installed while
HTTP connections other than WebSockets are open: it costs every round, the
feeds' too, ~5,500 machine instructions), before the round's tasks run; the reads that waited
are woken first, in their order, one wake-up each. While any wait, a nudge task
keeps the scheduler turning: a parked wait alone would let the run loop sleep
until the next I/O event or timer.
"""

from __future__ import annotations

import contextlib

import trio


class Turns(trio.abc.Instrument):
    def __init__(self, per_round: int) -> None:
        self.per_round = per_round
        self._left = per_round  # answers left in this round
        self._waiting = trio.lowlevel.ParkingLot()
        self._some_wait = trio.Event()

    def __len__(self) -> int:
        """Reads waiting for a round."""
        return len(self._waiting)

    def after_io_wait(self, timeout: float) -> None:
        left = self.per_round
        if self._waiting:
            left -= len(self._waiting.unpark(count=left))  # they run in this round
        self._left = left

    def install(self) -> None:
        trio.lowlevel.add_instrument(self)

    def uninstall(self) -> None:
        with contextlib.suppress(KeyError):  # (Trio drops an instrument whose hook raised)
            trio.lowlevel.remove_instrument(self)

    def take_now(self) -> bool:
        """A turn in this round, if one is left and nobody waits for one."""
        if self._left > 0 and not self._waiting:
            self._left -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a turn in a next round."""
        self._some_wait.set()
        await self._waiting.park()

    async def nudge(self) -> None:
        """Run for the server's life: keeps rounds coming while reads wait."""
        while True:
            await self._some_wait.wait()
            while self._waiting:
                await trio.lowlevel.checkpoint()
            self._some_wait = trio.Event()
