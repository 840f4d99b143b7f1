"""A Trio instrument that counts task steps (by task) and scheduler passes (I/O waits):
load-independent measures of the per-wake-up cost, for ``benchmarks.trickle``."""

from __future__ import annotations

from collections import Counter

import trio


class StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0
        self.io_waits = 0
        self.by_task: Counter = Counter()

    def before_task_step(self, task) -> None:
        self.steps += 1
        self.by_task[task.name] += 1

    def after_io_wait(self, timeout: float) -> None:
        self.io_waits += 1

    def snapshot(self) -> dict:
        return {"steps": self.steps, "io_waits": self.io_waits, "by_task": dict(self.by_task)}


def difference(a: dict, b: dict) -> dict:
    """``b - a`` of two snapshots."""
    tasks = {k: v - a["by_task"].get(k, 0) for k, v in b["by_task"].items()}
    return {"steps": b["steps"] - a["steps"], "io_waits": b["io_waits"] - a["io_waits"],
            "by_task": {k: v for k, v in tasks.items() if v}}
