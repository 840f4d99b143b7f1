"""The feed connections' own socket and TLS layer (``trio_books.sockio``), over real
TLS on 127.0.0.1 with a throw-away CA (trustme): what arrives in one socket read
comes back in one call, messages larger than a TLS record arrive whole, pings and
closes work through it, the ways a TLS peer can end are each a clear
``VenueClosed``, a certificate that does not verify is refused, a cancelled read
loses nothing, and a whole venue (300 books) runs over ``wss://``."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from functools import partial

import pytest
import trio
import trio.testing
import trustme

from trio_books import load_config_text, open_books, transport
from trio_books.errors import VenueClosed
from trio_books.sockio import SocketStream, open_stream
from trio_books.testing import fake_for
from trio_books.testing.harness import converge, view_top
from trio_books.wsclient import connect

from .test_wsclient import close_payload, frame


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def contexts(ca):
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def _handshake(stream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(4096)
    key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    await stream.send_all(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())


async def _tls_server(nursery, server_ctx, script) -> int:
    """A TLS server on 127.0.0.1 running ``script(ssl_stream)`` per connection; returns its port."""

    async def handler(tcp):
        tls = trio.SSLStream(tcp, server_ctx, server_side=True)
        try:
            await script(tls)
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def _serve_and_open(nursery, contexts, script, secure: bool) -> SocketStream:
    """A server running ``script(stream)`` per connection (TLS or plain), and our stream to it."""
    server_ctx, client_ctx = contexts
    if secure:
        port = await _tls_server(nursery, server_ctx, script)
    else:
        listeners = await nursery.start(partial(trio.serve_tcp, script, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
    return await open_stream("localhost" if secure else "127.0.0.1", port, client_ctx if secure else None)


async def test_many_frames_large_messages_pings_and_close_over_tls(nursery, contexts):
    server_ctx, client_ctx = contexts
    big = "x" * 100_000  # several TLS records (16 KiB each)
    many = [f'{{"n":{i}}}' for i in range(200)]
    got_from_client = []

    async def script(tls):
        await _handshake(tls)
        await tls.send_all(b"".join(frame(1, m) for m in many))  # one write: many frames
        await tls.send_all(frame(1, big))
        got_from_client.append(await tls.receive_some(4096))  # the client's text frame (masked)
        await tls.send_all(frame(9, b"hi"))  # a ping: the client answers with a pong
        got_from_client.append(await tls.receive_some(4096))
        await tls.send_all(frame(8, close_payload(1000)))
        await trio.sleep_forever()

    port = await _tls_server(nursery, server_ctx, script)
    conn = await connect(f"wss://localhost:{port}/", ssl_context=client_ctx, max_message_size=2**20)
    try:
        got = []
        while len(got) < len(many):
            batch = await conn.receive_batch()
            got.extend(batch)
        assert got == many
        assert await conn.receive_batch() == [big]
        await conn.send('{"ping":1}')
        with pytest.raises(VenueClosed, match="code 1000"):
            await conn.receive_batch()
    finally:
        await conn.aclose()
    assert len(got_from_client[0]) == 2 + 4 + len('{"ping":1}')  # a masked text frame
    assert got_from_client[1][0] == 0x8A  # pong


@pytest.mark.parametrize("ending", ["close_notify", "tcp_close"])
async def test_a_tls_peer_that_goes_away_is_a_clear_venue_closed(nursery, contexts, ending):
    server_ctx, client_ctx = contexts

    async def script(tls):
        await _handshake(tls)
        await tls.send_all(frame(1, "last"))
        if ending == "close_notify":
            await tls.aclose()
        else:
            await tls.transport_stream.aclose()  # no close_notify: a ragged end

    port = await _tls_server(nursery, server_ctx, script)
    conn = await connect(f"wss://localhost:{port}/", ssl_context=client_ctx, max_message_size=2**20)
    try:
        got = []
        with pytest.raises(VenueClosed, match="without a close frame"):
            while True:
                got.extend(await conn.receive_batch())
        assert got == ["last"]
    finally:
        await conn.aclose()


async def _refused(monkeypatch, client_ctx: ssl.SSLContext, port: int, match: str) -> None:
    """Opening ``wss://localhost:<port>`` through the transport, trusting ``client_ctx``, fails with ``match``."""
    monkeypatch.setattr(transport, "_SSL", client_ctx)
    with pytest.raises(VenueClosed, match=match):
        async with transport.open_connection(f"wss://localhost:{port}/", max_message_size=2**20, connect_timeout=5):
            pass


async def test_a_certificate_that_does_not_verify_is_refused(nursery, contexts, monkeypatch):
    server_ctx, _ = contexts
    port = await _tls_server(nursery, server_ctx, _handshake)
    untrusting = ssl.create_default_context()
    untrusting.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())  # another CA
    await _refused(monkeypatch, untrusting, port, "cannot connect: TLS: CERTIFICATE_VERIFY_FAILED")


async def test_a_server_that_hangs_up_during_the_tls_handshake(nursery, contexts, monkeypatch):
    _, client_ctx = contexts

    async def handler(tcp):
        await tcp.receive_some(4096)  # the ClientHello
        await tcp.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    await _refused(monkeypatch, client_ctx, listeners[0].socket.getsockname()[1], "cannot connect: .*TLS handshake")


@pytest.mark.parametrize("secure", [False, True])
async def test_a_cancelled_read_loses_nothing_and_a_closed_stream_says_so(nursery, contexts, secure):
    go = trio.Event()

    async def script(stream):
        if secure:
            await stream.do_handshake()
        await go.wait()
        await stream.send_all(b"after the cancel")
        await trio.sleep_forever()

    stream = await _serve_and_open(nursery, contexts, script, secure)
    assert isinstance(stream, SocketStream)

    async def cancel_once_blocked(scope: trio.CancelScope) -> None:
        await trio.testing.wait_all_tasks_blocked()  # the read waits for the socket
        scope.cancel()

    with trio.CancelScope() as scope:
        nursery.start_soon(cancel_once_blocked, scope)
        await stream.receive_some()
    assert scope.cancelled_caught
    go.set()
    data = b""
    while len(data) < len(b"after the cancel"):
        data += await stream.receive_some()
    assert data == b"after the cancel"
    await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


async def test_every_tls_record_of_one_socket_read_comes_back_in_one_call(nursery, contexts):
    server_ctx, client_ctx = contexts
    a, b = trio.socket.socketpair()
    server = trio.SSLStream(trio.SocketStream(a), server_ctx, server_side=True)
    sock = socket.socket(fileno=b.detach())
    sock.setblocking(False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = SocketStream(sock, client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost"), incoming, outgoing)
    async with trio.open_nursery() as n:
        n.start_soon(server.do_handshake)
        await client.handshake()
    for part in (b"one ", b"two ", b"three"):
        await server.send_all(part)  # one TLS record each, all in the socket before the read
    assert await client.receive_some() == b"one two three"
    await client.aclose()
    await server.aclose()


async def _tls_proxy(nursery, server_ctx, target_port: int) -> int:
    """TLS in front of a plain fake: wss://localhost:<port> → ws://127.0.0.1:<target_port>."""

    async def pipe(src, dst):
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)

    async def handler(tcp):
        tls = trio.SSLStream(tcp, server_ctx, server_side=True)
        plain = await trio.open_tcp_stream("127.0.0.1", target_port)
        async with trio.open_nursery() as n:
            n.start_soon(pipe, tls, plain)
            n.start_soon(pipe, plain, tls)

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def test_a_venue_with_300_books_over_wss(nursery, contexts, monkeypatch):
    server_ctx, client_ctx = contexts
    symbols = [f"S{i:03d}USDT" for i in range(300)]
    fake = await nursery.start(fake_for("binance_spot")(symbols, rate=2, levels=20).serve)
    ws_port = int(fake.ws_url.rsplit(":", 1)[1].split("/")[0])
    proxy = await _tls_proxy(nursery, server_ctx, ws_port)
    monkeypatch.setattr(transport, "_SSL", client_ctx)
    toml = fake.config_toml(depth=100, audit_interval=0).replace(fake.ws_url, f"wss://localhost:{proxy}")
    async with open_books(load_config_text(toml)) as books:
        with trio.fail_after(60):
            for s in symbols:
                await books.wait_live("binance_spot", s)
            for s in symbols[::30]:
                await converge(view_top(books, "binance_spot", s), fake, s)
        stats = books.statistics()["binance_spot"]
        assert stats.failures == {} and stats.attempts == 1


async def test_bytes_that_are_not_tls_after_the_handshake_are_a_clear_venue_closed(nursery, contexts):
    server_ctx, client_ctx = contexts

    async def script(tls):
        await _handshake(tls)
        await tls.send_all(frame(1, "fine"))
        await tls.transport_stream.send_all(b"\x17\x03\x03\x00\x05hello")  # an application-data record that does not decrypt
        await trio.sleep_forever()

    port = await _tls_server(nursery, server_ctx, script)
    conn = await connect(f"wss://localhost:{port}/", ssl_context=client_ctx, max_message_size=2**20)
    try:
        got = []
        with pytest.raises(VenueClosed, match=r"connection lost \(TLS: "):
            while True:
                got.extend(await conn.receive_batch())
        assert got == ["fine"]
    finally:
        await conn.aclose()


@pytest.mark.parametrize("secure", [False, True])
async def test_concurrent_senders_never_interleave(nursery, contexts, secure):
    size = 3_000_000  # far past the socket buffers: both senders have to wait for the peer
    received = bytearray()
    done = trio.Event()

    async def script(stream):
        if secure:
            await stream.do_handshake()
        await trio.testing.wait_all_tasks_blocked()  # both senders wait: the buffers are full
        while len(received) < 2 * size:
            received.extend(await stream.receive_some(1 << 16))
        done.set()
        await trio.sleep_forever()

    stream = await _serve_and_open(nursery, contexts, script, secure)
    async with trio.open_nursery() as n:
        n.start_soon(stream.send_all, b"a" * size)
        n.start_soon(stream.send_all, b"b" * size)
    with trio.fail_after(30):
        await done.wait()
    assert bytes(received) in (b"a" * size + b"b" * size, b"b" * size + b"a" * size)
    await stream.aclose()
