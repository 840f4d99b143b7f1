"""The library API: open_books, view, wait_live, updates, statistics, and the public names."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import trio

import trio_books
from trio_books.testing import FakeBinanceSpot

ROOT = pathlib.Path(__file__).parent.parent


def test_public_names_are_reexported_once():
    for name in trio_books.__all__:
        assert getattr(trio_books, name) is not None
    assert {"open_books", "Books", "BookView", "BookState", "load_config", "NotLive", "ConfigError"} <= set(trio_books.__all__)


async def test_view_raises_until_live_and_is_immutable(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=20).serve)
    fake.snapshot_delay = 0.5
    async with trio_books.open_books(trio_books.load_config_text(fake.config_toml(depth=50))) as books:
        with pytest.raises(trio_books.NotLive):
            books.view("binance_spot", "BTCUSDT")
        with pytest.raises(trio_books.UnknownBook):
            books.view("binance_spot", "NOPE")
        with pytest.raises(trio_books.UnknownBook):
            await books.wait_live("nope", "BTCUSDT")
        with trio.fail_after(10):
            await books.wait_live("binance_spot", "BTCUSDT")
        view = books.view("binance_spot", "BTCUSDT", depth=3)
        assert len(view.bids) == 3 and isinstance(view.bids, tuple)
        with pytest.raises(AttributeError):
            view.bids = ()  # frozen
        updates = []
        async for v in books.updates("binance_spot", "BTCUSDT", depth=1):
            updates.append(v.seq)
            if len(updates) == 3:
                break
        assert updates == sorted(updates) and len(set(updates)) == 3
        stats = books.statistics()["binance_spot"]
        assert stats.state == "live" and stats.frames > 0


def test_example_runs_as_documented():
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "watch_book.py")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    tops = [x.split(": ", 1)[1] for x in lines if x.startswith("seq ")]
    assert len(tops) == 5 and len(set(tops)) == 5  # five different tops: it shows something that moves
    assert lines[-1].startswith("frames received:")
