"""What one wake-up costs an event loop, before any WebSocket, TLS, parsing or book (run on request).

    python -m benchmarks.wakeup_floor       # ~1 minute; needs valgrind

A sender thread writes one byte to a loopback TCP connection 100 times a second;
a reader process (one per loop below) waits for the socket, reads, and waits
again, and reports how many reads it made. valgrind counts the reader's machine
instructions (load-independent) for 200 and for 800 bytes; the difference over the
difference in reads is the cost of one wake-up:

* ``trio``: one task, ``wait_readable`` then ``recv`` (what ``trio_books.sockio`` does);
* ``trio + channel hop``: the same read task hands each read to a second task through a
  memory channel (the design card's read task → channel → book task);
* ``asyncio``: a ``Protocol``'s ``data_received`` on the default loop;
* ``uvloop``: the same on uvloop (cryptofeed's loop), when installed.

This is the floor under every trickled event, and why trio-books' CPU per event on a
trickle stays above cryptofeed's (README, "Performance").
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time

LOOPS = {"trio": "trio", "trio + channel hop": "trio-hop", "asyncio": "asyncio", "uvloop": "uvloop"}
RATE = 100


def reader(mode: str, n: int, port: int) -> int:
    """The measured process: read ``n`` bytes (one wake-up each, unless some arrive
    together); returns the number of reads."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    reads = 0
    if mode.startswith("trio"):
        import trio
        from trio.lowlevel import wait_readable

        async def read_all(hand_over) -> None:
            nonlocal reads
            got = 0
            while got < n:
                await wait_readable(sock)
                data = sock.recv(65536)
                if not data:
                    return
                reads += 1
                got += len(data)
                hand_over(data)

        async def main() -> None:
            if mode == "trio":
                await read_all(lambda data: None)
                return
            send, recv = trio.open_memory_channel(5000)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all, send.send_nowait)
                got = 0
                async for data in recv:
                    got += len(data)
                    if got >= n:
                        break
                nursery.cancel_scope.cancel()

        trio.run(main)
        return reads
    import asyncio

    class Counter(asyncio.Protocol):
        def __init__(self, done: asyncio.Future) -> None:
            self.got, self.done = 0, done

        def data_received(self, data: bytes) -> None:
            nonlocal reads
            reads += 1
            self.got += len(data)
            if self.got >= n and not self.done.done():
                self.done.set_result(None)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def main_asyncio() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        await loop.create_connection(lambda: Counter(done), sock=sock)
        await done

    if mode == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main_asyncio())
    return reads


def _sender(listener: socket.socket, n: int) -> None:
    conn, _ = listener.accept()
    with conn:
        due = time.monotonic()
        for _ in range(n):
            due += 1 / RATE
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            conn.sendall(b"x")
        time.sleep(0.2)


def instructions(mode: str, n: int) -> tuple[int, int] | None:
    """``(instructions, reads)`` of one reader run, or None if it failed."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = threading.Thread(target=_sender, args=(listener, n), daemon=True)
        sender.start()
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, "-m", "benchmarks.wakeup_floor", "--reader", mode, str(n), str(listener.getsockname()[1])]
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
        sender.join(timeout=10)
    found = re.search(rb"I\s+refs:\s+([\d,]+)", proc.stderr)
    reads = re.search(rb"reads=(\d+)", proc.stdout)
    if proc.returncode != 0 or not found or not reads:
        return None
    return int(found.group(1).replace(b",", b"")), int(reads.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--reader"]:
        print(f"reads={reader(argv[1], int(argv[2]), int(argv[3]))}")
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count.")
        return 1
    print(f"Machine instructions per wake-up (valgrind; one byte per wake-up, {RATE} wake-ups/s, loopback):")
    for label, mode in LOOPS.items():
        if mode == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                print(f"- {label}: not installed (pip install -e '.[bench]')")
                continue
        small, large = instructions(mode, 200), instructions(mode, 800)
        if small is None or large is None or large[1] <= small[1]:
            print(f"- {label}: the run failed")
            continue
        reads = large[1] - small[1]
        print(f"- {label}: {(large[0] - small[0]) / reads:,.0f} ({reads} more reads for 600 more bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
