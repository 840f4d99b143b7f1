"""``trio-books top`` driven in a pseudo-terminal against the service in process:
the screen shows every venue and book, and the chosen book's ladder redraws in place."""

from __future__ import annotations

import os
import pty
import re
import signal
import sys

import pytest
import trio

from trio_books.top import Ladder

from .service import BOOKS, start_demo

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def test_ladder_applies_snapshots_updates_and_status():
    ladder = Ladder("v", "S")
    ladder.feed({"type": "snapshot", "venue": "v", "symbol": "S", "version": 3, "state": "live",
                 "bids": [["9.90", "1"], ["10.0", "2"]], "asks": [["10.10", "1.50"], ["10.2", "3"]]})
    ladder.feed({"type": "update", "venue": "v", "symbol": "S", "version": 4, "bids": [["10.00", "0"], ["9.95", "4"]], "asks": []})
    ladder.feed({"type": "update", "venue": "other", "symbol": "S", "version": 9, "bids": [["11", "1"]], "asks": []})
    assert ladder.top(5) == ([("9.95", "4"), ("9.90", "1")], [("10.10", "1.50"), ("10.2", "3")])
    assert (ladder.version, ladder.messages, ladder.state) == (4, 2, "live")
    ladder.feed({"type": "status", "venue": "v", "symbol": "S", "version": 5, "state": "stale"})
    assert ladder.state == "stale" and ladder.top(5) == ([], [])
    ladder.feed({"type": "error", "error": "unknown book"})
    assert ladder.error == "unknown book"


async def read_to_end(stream: trio.lowlevel.FdStream) -> bytes:
    """What the terminal shows until the program closes it (Linux: EIO once the last writer is gone)."""
    out = b""
    try:
        while chunk := await stream.receive_some(65536):
            out += chunk
    except trio.BrokenResourceError:
        pass
    return out


@pytest.mark.parametrize("token", ["", "t0ken-1"])
async def test_top_in_a_pty_shows_the_books_and_redraws(nursery, token):
    _, base, _ = await start_demo(nursery, token=token)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "50"}
    args = [sys.executable, "-c", "import sys; from trio_books.cli import main; sys.exit(main())",
            "top", "--http", base.removeprefix("http://"), "--book", "binance_spot/BTCUSDT", "--rows", "5", "--interval", "0.2"]
    if token:
        args += ["--token", token]
    proc = await trio.lowlevel.open_process(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    screen = raw = b""
    versions: set[bytes] = set()
    stream = trio.lowlevel.FdStream(master)
    try:
        with trio.fail_after(30):
            while len(versions) < 3 or not all(s.encode() in screen for books in BOOKS.values() for s in books):
                chunk = await stream.receive_some(65536)
                assert chunk, f"top ended early:\n{screen.decode(errors='replace')}"
                raw += chunk
                screen += ANSI.sub(b"", chunk)
                versions.update(re.findall(rb"version (\d+)", screen))
        text = screen.decode()
        for venue in BOOKS:
            assert venue in text
        assert "binance_spot/BTCUSDT live" in text and "bid qty" in text
        assert b"\x1b[1A" in raw, "redrawn in place (the cursor moves up over the previous frame)"
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            tail = await read_to_end(stream)
            code = await proc.wait()
        assert code == 0, tail.decode(errors="replace")[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
        await stream.aclose()
