from __future__ import annotations

import pathlib

import pytest
import trio

from trio_books import load_config_text
from trio_books.demo import DEMO_SYMBOLS
from trio_books.log import setup_logging
from trio_books.model import BookState
from trio_books.record import Recorder, read_records
from trio_books.runner import build_store, run_venues
from trio_books.testing import fake_for
from trio_books.venues import available

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


@pytest.fixture(scope="session")
def nine_venues(tmp_path_factory) -> list[dict]:
    """A recording of every venue's fake, two books each, all live then 3 s of traffic."""
    out = tmp_path_factory.mktemp("rec")

    async def record() -> list[str]:
        async with trio.open_nursery() as nursery:
            tables = []
            for vid in available():
                fake = await nursery.start(fake_for(vid)(DEMO_SYMBOLS[vid], rate=50).serve)
                tables.append(fake.config_toml(backoff_base=0.05, backoff_cap=0.1))
            cfg = load_config_text("\n".join(tables))
            store = build_store(cfg)
            rec = Recorder(str(out))
            async with trio.open_nursery() as inner:
                await inner.start(rec.run)
                inner.start_soon(run_venues, cfg, store, rec)
                with trio.fail_after(30):
                    while not all(e.state is BookState.LIVE for e in store.entries()):
                        await store.wait_change()
                await trio.sleep(3)  # traffic to replay, not synchronisation
                inner.cancel_scope.cancel()
            rec.close()
            nursery.cancel_scope.cancel()
        return rec.files

    return list(read_records(trio.run(record)))
