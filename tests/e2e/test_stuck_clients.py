"""SIGTERM stops the service within its shutdown grace whatever the clients do
(issue 15): here a ``/ws`` subscriber and an HTTP client pipelining requests,
neither of which ever reads. Exit status 0 (what ``docker stop`` wants)."""

from __future__ import annotations

import socket

import orjson
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import ServiceProcess

pytestmark = pytest.mark.e2e

GRACE = 2.0
MARGIN = 10.0  # process start-up of the clean-up, loaded machines


async def deaf_socket(port: int) -> trio.SocketStream:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def test_sigterm_exits_0_within_the_grace_while_clients_do_not_read(nursery):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=200).serve)
    svc = await ServiceProcess(fake.config_toml(depth=1000), env={"TRIO_BOOKS_SHUTDOWN_GRACE": str(GRACE)}).start(nursery)
    with trio.fail_after(20):
        while (await svc.get("/books/binance_spot/BTCUSDT")).status_code != 200:
            await trio.sleep(0.1)

    subscriber = await deaf_socket(svc.port)
    ws = WSConnection(ConnectionType.CLIENT)
    await subscriber.send_all(ws.send(Request(host="127.0.0.1", target="/ws")))
    while not any(isinstance(e, AcceptConnection) for e in ws.events()):
        ws.receive_data(await subscriber.receive_some(4096))
    sub = {"op": "subscribe", "venue": "binance_spot", "symbol": "BTCUSDT", "depth": 1000}
    await subscriber.send_all(ws.send(TextMessage(data=orjson.dumps(sub).decode())))

    piper = await deaf_socket(svc.port)
    with trio.move_on_after(2):  # as many as the server takes in; it stops reading once its sends are stuck
        await piper.send_all(b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n" * 20_000)
    assert (await svc.get("/health")).status_code in (200, 503)  # stuck clients do not stop the others

    with trio.fail_after(GRACE + MARGIN):
        assert await svc.stop(timeout=GRACE + MARGIN) == 0
    assert "trio-books stopped" in svc.log()
    await subscriber.aclose()
    await piper.aclose()
