from __future__ import annotations

import pathlib

import pytest
import trio

from trio_books.log import setup_logging

DATA = pathlib.Path(__file__).parent / "data"

setup_logging("WARNING")


@pytest.fixture
def data_dir() -> pathlib.Path:
    return DATA


async def pace_clock(step: float = 0.01) -> None:
    """Under MockClock with real sockets, keep a short deadline pending so the
    clock advances in small steps while the kernel moves bytes (otherwise it
    would jump straight to the next long timeout)."""
    while True:
        await trio.sleep(step)


@pytest.fixture
async def pacer(nursery):
    nursery.start_soon(pace_clock)
