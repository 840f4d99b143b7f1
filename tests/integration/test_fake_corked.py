"""FakeVenue.corked(): the frames of a block go out at its end, one write per
connection, with the same messages in the same order (faults included)."""

from __future__ import annotations

import trio
import trio.testing
from trio_websocket import open_websocket_url

from trio_books import load_config_text, open_books
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import converge, view_top

VENUE = "binance_spot"


async def _client_and_fake(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=0).serve)
    return fake, f"{fake.ws_url}/stream?streams=btcusdt@depth@100ms"


async def _writes(client) -> list[bytes]:
    """Record every write of the fake's side of ``client`` (its socket stream)."""
    stream = client.ws._stream
    sent: list[bytes] = []
    real = stream.send_all

    async def send_all(data) -> None:
        sent.append(bytes(data))
        await real(data)

    stream.send_all = send_all
    return sent


async def test_corked_frames_arrive_in_order_in_one_write(nursery):
    fake, url = await _client_and_fake(nursery)
    async with open_websocket_url(url) as ws:
        await trio.testing.wait_all_tasks_blocked()  # the fake has registered the client
        client = fake.clients[0]
        writes = await _writes(client)
        fake.duplicate_next()
        async with fake.corked():
            await client.send("a")  # duplicated
            await client.send("b")
            fake.send_malformed()
            await client.send("cccc")  # cut in half
            await client.send(b"\x01\x02")
            assert writes == []  # nothing written inside the block
        assert len(writes) == 1
        with trio.fail_after(5):
            got = [await ws.get_message() for _ in range(5)]
        assert got == ["a", "a", "b", "cc", b"\x01\x02"]
        # the same messages uncorked: one write each, the same bytes in all
        fake.duplicate_next()
        await client.send("a")
        await client.send("b")
        fake.send_malformed()
        await client.send("cccc")
        await client.send(b"\x01\x02")
        assert len(writes) == 6 and b"".join(writes[1:]) == writes[0]
        with trio.fail_after(5):
            assert [await ws.get_message() for _ in range(5)] == got


async def test_a_connection_closed_inside_the_block_gets_nothing_more(nursery):
    fake, url = await _client_and_fake(nursery)
    async with open_websocket_url(url):
        await trio.testing.wait_all_tasks_blocked()  # the fake has registered the client
        client = fake.clients[0]
        async with fake.corked():
            await client.send("a")
            await fake.drop()
            await client.send("b")
        assert client.closed


async def test_books_driven_by_corked_bursts_equal_the_truth(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=0).serve)

    async def drive() -> None:
        while True:
            if not fake.paused:  # converge() pauses the stream
                async with fake.corked():
                    await fake.burst(3)
            await trio.sleep(0.01)

    nursery.start_soon(drive)
    async with open_books(load_config_text(fake.config_toml(depth=100))) as books:
        with trio.fail_after(10):
            await books.wait_live(VENUE)
        for s in fake.symbols:
            await converge(view_top(books, VENUE, s), fake, s)
