"""The built-in RESP client: replies parsed whatever the chunking, errors kept per
command, a broken connection never reused, and no thread anywhere."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from trio_books import load_config_text, open_books
from trio_books.remote import open_remote_books
from trio_books.resp import RedisConnection, RedisConnectionError, ReplyError, entries, pack, pairs
from trio_books.testing import FakeBinanceSpot

from .helpers import is_live, sink_toml, wait_for

REPLIES = (b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n-ERR wrong type\r\n"
           b"*2\r\n$3\r\nk-1\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n")


async def _answered(chunk: int, count: int = 7) -> tuple[list, BaseException | None]:
    client, server = trio.testing.memory_stream_pair()
    conn = RedisConnection(client)
    got: list = []
    failure: BaseException | None = None

    async def serve() -> None:
        await server.receive_some(65536)
        for i in range(0, len(REPLIES), chunk):
            await server.send_all(REPLIES[i:i + chunk])
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            got = await conn.execute([("PING",)] * count, timeout=5)
        except ReplyError as exc:
            failure = exc
    return got, failure


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
async def test_replies_parse_whatever_the_chunking_and_an_error_reply_is_raised_after_all(chunk):
    got, failure = await _answered(chunk)
    assert got == [] and isinstance(failure, ReplyError) and str(failure) == "ERR wrong type"
    client, server = trio.testing.memory_stream_pair()
    conn = RedisConnection(client)
    await server.send_all(b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n")
    assert await conn.execute([("X",)] * 5, timeout=5) == ["OK", 42, "hello", None, None]
    assert not conn.broken  # error replies and complete reads leave it usable


async def test_a_cancelled_or_garbled_reply_breaks_the_connection_for_good():
    client, server = trio.testing.memory_stream_pair()
    conn = RedisConnection(client)
    with trio.move_on_after(0.01):  # no reply yet: cancelled half-way
        await conn.execute([("GET", "k")], timeout=5)
    assert conn.broken
    with pytest.raises(RedisConnectionError):
        await conn.execute([("GET", "k")], timeout=5)
    client, server = trio.testing.memory_stream_pair()
    conn = RedisConnection(client)
    await server.send_all(b"?what\r\n")
    with pytest.raises(RedisConnectionError):
        await conn.execute([("GET", "k")], timeout=5)


def test_pack_and_shapes():
    assert pack([("SET", "k", b"v\r\n", 5)]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n5\r\n"
    assert pairs(["a", "1", "b", "2"]) == {"a": "1", "b": "2"} and pairs(None) == {}
    assert entries([["1-0", ["f", "v"]]]) == [("1-0", {"f": "v"})] and entries(None) == []


async def test_against_redis_auth_and_database_from_the_url(redis_server):
    conn = await RedisConnection.open(redis_server.url.replace("/0", "/3"))
    try:
        assert await conn.execute([("SET", "k", "v"), ("GET", "k")], timeout=5) == ["OK", "v"]
    finally:
        await conn.aclose()
    assert redis_server.client().get("k") is None  # it was database 3
    with pytest.raises(ReplyError, match="AUTH"):  # no password configured: the server says so
        await RedisConnection.open(redis_server.url.replace("redis://", "redis://:secret@"))
    with pytest.raises(RedisConnectionError):
        await RedisConnection.open("redis://127.0.0.1:9/0")


async def test_sink_and_remote_use_no_thread_and_leave_none_behind(nursery, redis_server):
    """The sink and the reader used the synchronous client in worker threads: a busy
    Trio thread had to time.sleep to let them run, and threads abandoned at
    cancellation kept using clients that clean-up was closing."""
    before = set(threading.enumerate())
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100) + sink_toml(redis_server.url, depth=20, snapshot_every=20))
    async with open_books(cfg) as books:
        with trio.fail_after(10):
            await books.wait_live("binance_spot")
        async with open_remote_books(redis_server.url) as remote:
            await wait_for(lambda: is_live(remote, "binance_spot", "BTCUSDT"), what="remote live")
            assert books.store.sinks["redis"].messages > 0
            assert set(threading.enumerate()) == before
    assert set(threading.enumerate()) == before
