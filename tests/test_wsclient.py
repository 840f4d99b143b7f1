"""Our wsproto client against trio-websocket's server: batching, pings, limits, closes."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import serve_websocket

from trio_books.errors import BadFrame, VenueClosed, VenueRejected
from trio_books.transport import open_connection


async def serve(nursery, handler):
    server = await nursery.start(lambda task_status: serve_websocket(handler, "127.0.0.1", 0, None, task_status=task_status))
    return f"ws://127.0.0.1:{server.port}/path?x=1"


async def test_batches_pings_and_close(nursery):
    got_path = []

    async def handler(request):
        got_path.append(request.path)
        ws = await request.accept()
        for i in range(50):
            await ws.send_message(f"m{i}")
        await ws.send_message(b"\x00binary")
        assert await ws.get_message() == "hello"
        assert await ws.get_message() == "after ping"
        await ws.aclose(code=4000, reason="bye now")

    url = await serve(nursery, handler)
    got: list = []
    closed: list = []

    async def reader(conn):
        try:
            while True:
                batch = await conn.receive_batch()
                assert batch
                got.extend(batch)
        except VenueClosed as exc:
            closed.append(str(exc))

    async with open_connection(url, max_message_size=2**20, connect_timeout=5) as conn:
        async with trio.open_nursery() as n:
            n.start_soon(reader, conn)
            await conn.send("hello")
            with trio.fail_after(2):
                await conn.ping()  # the pong is seen by the reader
            await conn.send("after ping")
    assert closed and "code 4000" in closed[0]
    assert got == [f"m{i}" for i in range(50)] + [b"\x00binary"]
    assert got_path == ["/path?x=1"]


async def test_oversized_message_is_a_bad_frame(nursery):
    async def handler(request):
        ws = await request.accept()
        await ws.send_message("x" * 5000)
        await trio.sleep(5)

    url = await serve(nursery, handler)
    async with open_connection(url, max_message_size=1000, connect_timeout=5) as conn:
        with pytest.raises(BadFrame):
            await conn.receive_batch()


async def test_rejected_handshake_and_refused_port(nursery):
    async def handler(request):
        await request.reject(403)

    url = await serve(nursery, handler)
    with pytest.raises(VenueRejected, match="403"):
        async with open_connection(url, max_message_size=1000, connect_timeout=5):
            pass
    from trio_books.testing.harness import free_port

    with pytest.raises(VenueClosed, match="cannot connect"):
        async with open_connection(f"ws://127.0.0.1:{free_port()}", max_message_size=1000, connect_timeout=5):
            pass
