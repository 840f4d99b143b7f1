"""The server's hot read: plain keep-alive GETs parsed without h11 and answered from
the cached response, everything else through h11 and the app, with the same bytes."""

from __future__ import annotations

import select
import socket
import time

import h11
import pytest
import trio
import trio.testing

from trio_books.config import ServiceConfig
from trio_books.serve.app import build_app
from trio_books.serve.http1 import MAX_HEAD, head_end, plain_get
from trio_books.serve.metrics import ClientCounts
from trio_books.serve.server import BUSY, BUSY_RESPONSE, KEEP_ALIVE, HttpServer
from trio_books.serve.stream import SEND_TIMEOUT

from .test_serve_server import SYMBOL, VENUE, big_store

PATH = f"/books/{VENUE}/{SYMBOL}?depth=3"
PLAIN = f"GET {PATH} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


# -- the parser (pure) --------------------------------------------------------------

def test_a_plain_get_is_parsed_with_lowercased_names_and_bare_values():
    head = b"GET /books/a/b?depth=5 HTTP/1.1\r\nHost: t\r\nUser-Agent:  wrk \t\r\nX-Empty:\r\nConnection: Keep-Alive\r\n\r\n"
    assert head_end(head + b"GET /next") == len(head)
    assert plain_get(head[:-4]) == (b"/books/a/b?depth=5", [(b"host", b"t"), (b"user-agent", b"wrk"), (b"x-empty", b""),
                                                             (b"connection", b"Keep-Alive")])


def test_a_head_split_at_every_byte_needs_more_until_its_blank_line():
    for cut in range(len(PLAIN)):
        assert head_end(PLAIN[:cut]) == 0, cut
    assert head_end(PLAIN) == len(PLAIN)


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.0\r\nHost: t",  # HTTP/1.0: h11 closes after the response
    b"HEAD / HTTP/1.1\r\nHost: t",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0",
    b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0",
    b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked",
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close",
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket",
    b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue",
    b"GET / HTTP/1.1",  # no Host
    b"GET / HTTP/1.1\r\nHost: t\r\nHost: u",
    b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded",  # obs-fold
    b"GET / HTTP/1.1\r\nHost : t",
    b"GET / HTTP/1.1\r\nHost t",
    b"GET / HTTP/1.1\r\nHost: t\x01",
    b"GET  / HTTP/1.1\r\nHost: t",
    b"GET http://t/ HTTP/1.1\r\nHost: t",  # absolute form
    b"GET / HTTP/1.1 \r\nHost: t",
    b"\r\nGET / HTTP/1.1\r\nHost: t",
    b"get / HTTP/1.1\r\nHost: t",
    b"GET /\xff HTTP/1.1\r\nHost: t",
])
def test_anything_unusual_is_left_to_h11(head):
    assert plain_get(head) is None


def test_bare_lf_heads_and_oversized_heads_are_h11s_to_judge():
    assert head_end(b"GET / HTTP/1.1\nHost: t\n\n") == -1
    assert head_end(b"GET / HTTP/1.1\r\nHost: t\n\r\n") == -1
    assert head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD) == -1
    assert head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n") == -1


# -- the server -----------------------------------------------------------------------

async def start(nursery: trio.Nursery, service: ServiceConfig | None = None) -> tuple[HttpServer, ClientCounts, int]:
    store, _ = big_store()
    clients = ClientCounts()
    server = HttpServer(build_app(store, clients, service), send_timeout=SEND_TIMEOUT)
    urls = await nursery.start(server.serve, "127.0.0.1", 0)
    return server, clients, int(urls[0].rsplit(":", 1)[1])


async def read_responses(stream: trio.SocketStream, count: int) -> tuple[list[tuple[int, dict[bytes, bytes], bytes]], bytes]:
    """``count`` responses (status, headers, body) read with h11 as the client, and their raw bytes."""
    conn, out, raw = h11.Connection(h11.CLIENT), [], b""
    for _ in range(count):
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "t")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                raw += data
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                out.append((status, headers, body))
                break
            else:
                raise AssertionError(event)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
    return out, raw


async def exchange(port: int, data: bytes, count: int) -> tuple[list[tuple[int, dict[bytes, bytes], bytes]], bytes, bytes]:
    """Send ``data``, read ``count`` responses, then what follows (b"" once the server closed)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    with trio.fail_after(10):
        responses, raw = await read_responses(stream, count)
    return responses, raw, stream


async def test_pipelined_plain_gets_are_answered_in_order_with_the_routes_bytes():
    async with trio.open_nursery() as nursery:
        _, clients, port = await start(nursery)
        routed = f"GET {PATH} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".encode()  # h11 and the app
        responses, raw, stream = await exchange(port, PLAIN * 3 + routed + PLAIN, 5)
        assert [r[0] for r in responses] == [200] * 5
        assert len({r[2] for r in responses}) == 1 and responses[0][2].startswith(b'{"venue":"binance_spot"')
        one = raw[: len(raw) // 5]
        assert raw == one * 5  # the fast answer is byte for byte the route's
        assert clients.http_requests == 5
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_request_split_anywhere_is_answered():
    async with trio.open_nursery() as nursery:
        _, clients, port = await start(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        for cut in range(1, len(PLAIN)):
            await stream.send_all(PLAIN[:cut])
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(PLAIN[cut:])
            with trio.fail_after(10):
                [(status, _, _)], _ = await read_responses(stream, 1)
            assert status == 200, cut
        assert clients.http_requests == len(PLAIN) - 1
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("request_bytes", [
    f"GET {PATH} HTTP/1.0\r\n\r\n".encode(),
    f"GET {PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(),
])
async def test_http_1_0_and_connection_close_are_answered_then_closed(request_bytes):
    async with trio.open_nursery() as nursery:
        _, _, port = await start(nursery)
        [(status, headers, _)], _, stream = await exchange(port, request_bytes + PLAIN, 1)
        assert status == 200 and headers[b"connection"] == b"close"
        with trio.fail_after(10):
            assert await stream.receive_some(65536) == b""  # the pipelined request after it is not answered
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\x00\r\n\r\n",
    b"GET / HTTP/1.1\nHost: t\n\x01\n\n",
])
async def test_a_bad_request_gets_one_line_of_json_and_a_close_never_a_500(request_bytes):
    async with trio.open_nursery() as nursery:
        _, clients, port = await start(nursery)
        [(status, headers, body)], _, stream = await exchange(port, request_bytes, 1)
        assert 400 <= status < 500 and body == b'{"error":"bad request"}' and headers[b"connection"] == b"close"
        with trio.fail_after(10):
            assert await stream.receive_some(65536) == b""
        assert clients.http_requests == 0
        nursery.cancel_scope.cancel()


async def test_what_the_fast_path_does_not_answer_the_routes_do():
    async with trio.open_nursery() as nursery:
        _, clients, port = await start(nursery)
        paths = [f"/books/{VENUE}/{SYMBOL}?depth=0", f"/books/{VENUE}/{SYMBOL}?depth=x", f"/books/{VENUE}/NOPE",
                 f"/books/{VENUE}/{SYMBOL}%3F", "/health"]
        data = b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths)
        responses, _, stream = await exchange(port, data, len(paths))
        assert [r[0] for r in responses] == [400, 400, 404, 404, 200]
        assert clients.http_requests == len(paths)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_the_token_and_origin_checks_hold_on_the_fast_path():
    service = ServiceConfig(auth_token="s3cret", allowed_origins=("https://desk.example",))
    async with trio.open_nursery() as nursery:
        _, clients, port = await start(nursery, service)
        heads = ["", "Authorization: Bearer wrong\r\n", "Authorization: Bearer s3cret\r\n",
                 "Authorization: Bearer s3cret\r\nOrigin: https://evil.example\r\n",
                 "Authorization: Bearer s3cret\r\nOrigin: https://desk.example\r\n"]
        data = b"".join(f"GET {PATH} HTTP/1.1\r\nHost: t\r\n{h}\r\n".encode() for h in heads)
        responses, _, stream = await exchange(port, data, len(heads))
        assert [r[0] for r in responses] == [401, 401, 200, 403, 200]
        assert clients.http_requests == 2
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_idle_keep_alive_connection_and_a_slow_head_are_closed(autojump_clock):
    async with trio.open_nursery() as nursery:
        server, _, port = await start(nursery)
        [(status, _, _)], _, idle = await exchange(port, PLAIN, 1)
        assert status == 200
        slow = await trio.open_tcp_stream("127.0.0.1", port)
        await slow.send_all(PLAIN[:10])
        began = trio.current_time()
        with trio.fail_after(KEEP_ALIVE + 5):
            assert await idle.receive_some(100) == b""
            assert await slow.receive_some(100) == b""
        assert KEEP_ALIVE <= trio.current_time() - began
        with trio.fail_after(1):
            await server.wait_closed()
        nursery.cancel_scope.cancel()


def test_the_shed_answer_is_what_h11_writes_for_the_same_503():
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(PLAIN)
    conn.next_event()
    body, extra = BUSY
    data = conn.send(h11.Response(status_code=503, reason=b"Service Unavailable", headers=[
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]))
    assert data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()) == BUSY_RESPONSE


async def test_fast_answers_are_bounded_per_scheduler_round_and_shed_past_the_waiting_bound():
    store, _ = big_store()
    clients = ClientCounts()
    server = HttpServer(build_app(store, clients), max_active=1, max_waiting=1)
    async with trio.open_nursery() as nursery:
        port = int((await nursery.start(server.serve, "127.0.0.1", 0))[0].rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert server.connections == 3
        for sock in socks:  # all three readable at the server's next I/O wait
            sock.sendall(PLAIN)
        answers = []
        for sock in socks:
            sock.setblocking(False)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            with trio.fail_after(10):
                [(status, headers, _)], _ = await read_responses(stream, 1)
            answers.append((status, headers.get(b"retry-after")))
            await stream.aclose()
        # one answered in that round, one waited for the next, one refused at once
        assert sorted(answers, key=str) == [(200, None), (200, None), (503, b"1")]
        assert server.shed == 1 and clients.http_requests == 2
        nursery.cancel_scope.cancel()


async def test_a_request_waiting_for_a_round_is_answered_without_any_other_event(mock_clock):
    """Time stands still (no timer fires) and the client waits in a thread: nothing but the
    server itself may bring the waiting request its round."""
    store, _ = big_store()
    server = HttpServer(build_app(store, ClientCounts()), max_active=1)
    async with trio.open_nursery() as nursery:
        port = int((await nursery.start(server.serve, "127.0.0.1", 0))[0].rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()

        def both_answered() -> bool:
            deadline = time.monotonic() + 30  # a guard against a hang, not a measure
            waiting = list(socks)
            while waiting and time.monotonic() < deadline:
                ready, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
                waiting = [s for s in waiting if s not in ready]
            return not waiting

        for sock in socks:  # both readable at the server's next I/O wait: one answered, one waits a round
            sock.sendall(PLAIN)
        assert await trio.to_thread.run_sync(both_answered)
        for sock in socks:
            assert sock.recv(12) == b"HTTP/1.1 200"
            sock.close()
        nursery.cancel_scope.cancel()


async def test_the_rounds_instrument_runs_only_while_an_http_connection_is_open():
    """Its hook costs every scheduler round, the feeds' too: a WebSocket subscriber (which
    never sends a hot read) does not keep it installed."""
    from trio_websocket import open_websocket_url

    async with trio.open_nursery() as nursery:
        server, _, port = await start(nursery)
        rounds = []
        renew = server._turns.after_io_wait
        server._turns.after_io_wait = lambda timeout: (rounds.append(timeout), renew(timeout))

        async def some_rounds() -> int:
            rounds.clear()
            for _ in range(5):
                await trio.lowlevel.checkpoint()  # a scheduler round (and its I/O check) each
            return len(rounds)

        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws"):
            await trio.testing.wait_all_tasks_blocked()
            assert server.connections == 1 and await some_rounds() == 0
            http = await trio.open_tcp_stream("127.0.0.1", port)  # an idle keep-alive HTTP connection
            await trio.testing.wait_all_tasks_blocked()
            assert server.connections == 2 and await some_rounds() >= 5
            await http.aclose()
            await trio.testing.wait_all_tasks_blocked()  # the server saw the close
            assert server.connections == 1 and await some_rounds() == 0
        nursery.cancel_scope.cancel()
