"""The HTTP/WebSocket server under clients that stop reading, pipeline, or vanish
(issue 15): a send never outlives the send timeout, no work is done for a peer
that is gone, and shutdown is bounded whatever the clients do."""

from __future__ import annotations

import socket
import struct

import h11
import httpx
import orjson
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from trio_books.book import OrderBook
from trio_books.model import BookState
from trio_books.serve.app import build_app
from trio_books.serve.metrics import ClientCounts
from trio_books.serve.server import HttpServer
from trio_books.serve.stream import SEND_TIMEOUT
from trio_books.store import BookStore

VENUE, SYMBOL = "binance_spot", "BTCUSDT"
LEVELS = 2000


def big_store(shift: int = 0) -> tuple[BookStore, OrderBook]:
    store = BookStore([(VENUE, SYMBOL)])
    book = OrderBook(5000)
    book.apply([(f"{1000 + i}.{shift}", "1") for i in range(LEVELS)], [(f"{9000 + i}.{shift}", "1") for i in range(LEVELS)])
    store.publish(VENUE, SYMBOL, book)
    store.set_state(VENUE, [SYMBOL], BookState.LIVE)
    return store, book


async def start(nursery: trio.Nursery, store: BookStore) -> tuple[HttpServer, ClientCounts, int]:
    clients = ClientCounts()
    server = HttpServer(build_app(store, clients), send_timeout=SEND_TIMEOUT)
    urls = await nursery.start(server.serve, "127.0.0.1", 0)
    return server, clients, int(urls[0].rsplit(":", 1)[1])


async def deaf_socket(port: int) -> trio.SocketStream:
    """A client socket with a tiny receive buffer, so the server's sends block soon."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def deaf_subscriber(port: int) -> trio.SocketStream:
    """A ``/ws`` client that subscribes to the whole book, then never reads again."""
    stream = await deaf_socket(port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/ws")))
    while not any(isinstance(e, AcceptConnection) for e in ws.events()):
        ws.receive_data(await stream.receive_some(4096))
    sub = {"op": "subscribe", "venue": VENUE, "symbol": SYMBOL, "depth": 5000}
    await stream.send_all(ws.send(TextMessage(data=orjson.dumps(sub).decode())))
    return stream


async def drain_to_eof(stream: trio.SocketStream) -> int:
    total = 0
    while data := await stream.receive_some(65536):
        total += len(data)
    return total


async def test_a_ws_client_that_does_not_read_is_dropped_after_the_send_timeout(autojump_clock):
    store, book = big_store()
    entry = store.entry(VENUE, SYMBOL)
    async with trio.open_nursery() as nursery:
        server, clients, port = await start(nursery, store)
        stream = await deaf_subscriber(port)
        began = trio.current_time()

        async def move_the_book() -> None:  # every change rewrites the book: each message is a full snapshot
            for i in range(1, 10_000):
                book.apply([(f"{1000 + j}.{i % 2}", str(i)) for j in range(LEVELS)], [])
                store.touched(entry, i, None)
                await trio.sleep(0.05)

        nursery.start_soon(move_the_book)
        with trio.fail_after(SEND_TIMEOUT + 30):
            await server.wait_closed()
        assert clients.stream_clients == 0
        assert trio.current_time() - began >= SEND_TIMEOUT  # blocked, then given the whole send timeout
        with trio.fail_after(5):
            assert await drain_to_eof(stream) > 0  # what was sent before, then the server's close
        nursery.cancel_scope.cancel()


async def test_pipelined_requests_of_a_vanished_client_are_not_handled():
    store, _ = big_store()
    async with trio.open_nursery() as nursery:
        server, clients, port = await start(nursery, store)
        stream = await deaf_socket(port)
        sent = 500
        request = f"GET /books/{VENUE}/{SYMBOL}?depth=5000 HTTP/1.1\r\nhost: t\r\n\r\n".encode()
        await stream.send_all(request * sent)
        await trio.testing.wait_all_tasks_blocked()  # the server's send is stuck: nobody reads
        handled = clients.http_requests
        assert 0 < handled < sent
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()  # reset: the client is gone, its other requests with it
        with trio.fail_after(5):
            await server.wait_closed()
        assert clients.http_requests == handled  # not one more request handled for the dead peer
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get(f"/books/{VENUE}/{SYMBOL}?depth=1")).json()["bids"] == [[f"{999 + LEVELS}.0", "1"]]
        nursery.cancel_scope.cancel()


async def test_shutdown_is_bounded_by_the_grace_whatever_the_clients_do(autojump_clock):
    store, _ = big_store()
    async with trio.open_nursery() as nursery:
        server, clients, port = await start(nursery, store)
        subscriber = await deaf_subscriber(port)  # noqa: F841  (kept open)
        piper = await deaf_socket(port)
        await piper.send_all(f"GET /books/{VENUE}/{SYMBOL}?depth=5000 HTTP/1.1\r\nhost: t\r\n\r\n".encode() * 200)
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # a keep-alive connection between requests
        await idle.send_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        assert server.connections == 3
        began = trio.current_time()
        with trio.fail_after(3):
            await server.shutdown(2.0)
            await server.wait_closed()
        assert trio.current_time() - began <= 2.0
        assert server.connections == 0
        nursery.cancel_scope.cancel()


async def raw_get(stream: trio.SocketStream, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 request on its own connection (h11 as the client)."""
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target=path, headers=[("host", "t")])) + conn.send(h11.EndOfMessage()))
    response, body = None, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return response.status_code, dict(response.headers), body


async def test_reads_past_the_concurrency_bound_wait_then_are_shed_with_503_and_retry_after():
    release = trio.Event()
    entered = 0

    async def slow_app(scope, receive, send):
        nonlocal entered
        entered += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    server = HttpServer(slow_app, max_active=1, max_waiting=1)
    async with trio.open_nursery() as nursery:
        port = int((await nursery.start(server.serve, "127.0.0.1", 0))[0].rsplit(":", 1)[1])
        answers: list[int] = []

        async def get() -> None:
            answers.append((await raw_get(await trio.open_tcp_stream("127.0.0.1", port), "/"))[0])

        nursery.start_soon(get)  # handled
        nursery.start_soon(get)  # waits its turn
        await trio.testing.wait_all_tasks_blocked()
        assert entered == 1
        status, headers, body = await raw_get(await trio.open_tcp_stream("127.0.0.1", port), "/")  # refused at once
        assert status == 503 and headers[b"retry-after"] == b"1" and b"error" in body
        assert server.shed == 1
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [200, 200] and entered == 2
        nursery.cancel_scope.cancel()


async def test_shutdown_closes_a_reading_ws_client_with_1001_and_ends_without_the_grace():
    from trio_websocket import ConnectionClosed, open_websocket_url

    store, _ = big_store()
    async with trio.open_nursery() as nursery:
        server, clients, port = await start(nursery, store)
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send_message(orjson.dumps({"op": "subscribe", "venue": VENUE, "symbol": SYMBOL, "depth": 1}).decode())
            assert orjson.loads(await ws.get_message())["type"] == "status"
            with trio.fail_after(5):
                nursery.start_soon(server.shutdown, 60.0)
                try:
                    while True:
                        await ws.get_message()
                except ConnectionClosed as closed:
                    assert closed.reason.code == 1001
                await server.wait_closed()
        assert clients.stream_clients == 0
