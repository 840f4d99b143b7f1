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


# --- the frame splitter, fed crafted bytes ----------------------------------------------------
#
# A WsConnection over an in-memory stream whose reads return exactly the chunks given;
# wsproto's own server side decodes what the client sends back (pongs, close frames).

import struct
from functools import partial

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Pong, Request

from trio_books.wsclient import WsConnection, connect


class ChunkStream(trio.abc.Stream):
    """Reads return the given chunks one by one, then EOF; sends are recorded."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.sent = bytearray()

    async def receive_some(self, max_bytes=None):
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data):
        await trio.lowlevel.checkpoint()
        self.sent += data

    async def wait_send_all_might_not_block(self):
        pass

    async def aclose(self):
        pass


def open_pair():
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="127.0.0.1", target="/")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


def frame(opcode, payload=b"", *, fin=True, rsv=0, mask=None, form=None):
    """One server frame, built by hand (RFC 6455 5.2). ``form``: force the 7-bit,
    16-bit (126) or 64-bit (127) length form."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    form = form or (7 if n < 126 else 16 if n < 65536 else 64)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    m = 0x80 if mask is not None else 0
    if form == 7:
        head += bytes([m | n])
    elif form == 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


async def read_all(chunks, max_message_size=2**20):
    """Every message out of ``chunks`` in order, the batches, how it ended, and what the
    client sent (as wsproto server events)."""
    client, server = open_pair()
    stream = ChunkStream(chunks)
    conn = WsConnection(stream, client, max_message_size)
    got, batches, ended = [], [], None
    try:
        while True:
            batch = await conn.receive_batch()
            assert batch
            batches.append(batch)
            got.extend(batch)
    except (VenueClosed, BadFrame) as exc:
        ended = exc
    server.receive_data(bytes(stream.sent))
    return got, batches, ended, list(server.events())


def every_split(data):
    """``data`` cut once at every byte boundary, and cut into single bytes."""
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


MIXED = [
    ("text", "héllo ✓"),
    ("bytes", b"\x00\x01binary"),
    ("text", ""),
    ("text", "x" * 126),  # 126: the first 16-bit length
    ("text", "y" * 300),
    ("bytes", b"z" * 65535),  # the largest 16-bit length
    ("text", "w" * 65536),  # the first 64-bit length
]


def mixed_bytes():
    return b"".join(frame(1 if kind == "text" else 2, payload) for kind, payload in MIXED)


async def test_plain_frames_in_one_read_are_one_batch_in_order():
    got, batches, ended, _ = await read_all([mixed_bytes()])
    assert got == [p for _, p in MIXED] and len(batches) == 1
    assert [type(m) for m in got] == [str, bytes, str, str, str, bytes, str]
    assert "without a close frame" in str(ended)


async def test_frames_split_at_every_byte_boundary():
    data = b"".join(frame(1, f"m{i}") for i in range(3)) + frame(2, b"\xff" * 130) + frame(1, "é" * 20)
    want = ["m0", "m1", "m2", b"\xff" * 130, "é" * 20]
    for chunks in every_split(data):
        got, _, ended, _ = await read_all(chunks)
        assert got == want, chunks
        assert isinstance(ended, VenueClosed)


async def test_long_length_forms_split_inside_the_header():
    big = "q" * 70_000
    data = frame(1, "a") + frame(1, big) + frame(1, "b" * 200) + frame(1, "c")
    cuts = [1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 20, 70_000, len(data) - 300, len(data) - 2]
    for cut in cuts:
        got, _, _, _ = await read_all([data[:cut], data[cut:]])
        assert got == ["a", big, "b" * 200, "c"], cut


async def test_non_minimal_length_is_a_protocol_error():
    # 5 bytes sent in the 16-bit form: wsproto rejects it, so must we
    got, batches, ended, sent = await read_all([frame(1, "ok") + frame(1, "short", form=16)])
    assert batches == [["ok"]]  # what came before the error is returned first
    assert isinstance(ended, VenueClosed) and "protocol error" in str(ended)
    assert any(isinstance(e, CloseConnection) and e.code == 1002 for e in sent)


async def test_ping_between_data_frames_is_answered_in_order():
    data = frame(1, "a") + frame(9, b"p1") + frame(1, "b") + frame(10, b"unsolicited") + frame(2, b"c")
    for chunks in every_split(data):
        got, _, _, sent = await read_all(chunks)
        assert got == ["a", "b", b"c"], chunks
        pongs = [e for e in sent if isinstance(e, Pong)]
        assert [bytes(p.payload) for p in pongs] == [b"p1"]


async def test_a_ping_alone_in_a_read_does_not_end_the_batch_early():
    got, batches, _, sent = await read_all([frame(9, b"x"), frame(1, "after")])
    assert batches == [["after"]]
    assert [bytes(e.payload) for e in sent if isinstance(e, Pong)] == [b"x"]


async def test_fragmented_message_with_a_ping_inside():
    data = (
        frame(1, "before")
        + frame(1, "frag-", fin=False)
        + frame(9, b"p")
        + frame(0, "ment", fin=False)
        + frame(0, "ed ✓", fin=True)
        + frame(2, b"after")
    )
    for chunks in every_split(data):
        got, _, _, sent = await read_all(chunks)
        assert got == ["before", "frag-mented ✓", b"after"], chunks
        assert [bytes(e.payload) for e in sent if isinstance(e, Pong)] == [b"p"]


async def test_a_whole_frame_inside_a_fragmented_message_is_an_error():
    # FIN=1 text while a fragmented message is open: not ours to decode, wsproto fails it
    got, _, ended, sent = await read_all([frame(1, "frag", fin=False) + frame(1, "whole")])
    assert got == [] and "protocol error" in str(ended)
    assert any(isinstance(e, CloseConnection) and e.code == 1002 for e in sent)


async def test_close_from_the_venue_after_messages():
    data = frame(1, "a") + frame(2, b"b") + frame(8, close_payload(4000, "bye now"))
    for chunks in every_split(data):
        got, _, ended, sent = await read_all(chunks)
        assert got == ["a", b"b"], chunks  # messages before the close come out first
        assert isinstance(ended, VenueClosed) and "code 4000 (bye now)" in str(ended)
        assert [e.code for e in sent if isinstance(e, CloseConnection)] == [4000]  # the close is answered
    got, batches, _, _ = await read_all([frame(1, "a") + frame(2, b"b"), frame(8, close_payload(1000))])
    assert batches == [["a", b"b"]]


async def test_invalid_utf8_fails_the_connection_with_1007():
    for payload in (b"\xff\xfe", b"ok \xc3", b"\xed\xa0\x80"):  # bad byte, truncated, surrogate
        got, _, ended, sent = await read_all([frame(1, "fine") + frame(1, payload) + frame(1, "never")])
        assert got == ["fine"]
        assert isinstance(ended, VenueClosed) and "UTF-8" in str(ended)
        assert [e.code for e in sent if isinstance(e, CloseConnection)] == [1007]
    # the same inside a fragmented message is wsproto's to catch
    _, _, ended, sent = await read_all([frame(1, b"a\xc3", fin=False) + frame(0, b"(", fin=True)])
    assert isinstance(ended, VenueClosed) and [e.code for e in sent if isinstance(e, CloseConnection)] == [1007]


async def test_masked_server_frame_is_a_protocol_error():
    got, _, ended, sent = await read_all([frame(1, "plain") + frame(1, "masked", mask=b"\x01\x02\x03\x04")])
    assert got == ["plain"]
    assert isinstance(ended, VenueClosed) and "protocol error" in str(ended)
    assert [e.code for e in sent if isinstance(e, CloseConnection)] == [1002]


async def test_rsv_bits_and_bad_opcodes_without_extensions_are_protocol_errors():
    for bad in (frame(1, "x", rsv=4), frame(1, "x", rsv=1), frame(3, "x"), frame(0, "x"), frame(9, b"", fin=False)):
        got, _, ended, sent = await read_all([frame(1, "first"), frame(1, "ok") + bad + frame(1, "never")])
        assert got == ["first", "ok"], bad
        assert isinstance(ended, VenueClosed) and "protocol error" in str(ended), bad
        assert [e.code for e in sent if isinstance(e, CloseConnection)] == [1002], bad


async def test_oversized_plain_message_fails_before_it_arrives():
    header_only = frame(1, "x" * 5000)[:10]
    got, _, ended, sent = await read_all([frame(1, "small"), header_only], max_message_size=1000)
    assert got == ["small"] and isinstance(ended, BadFrame)
    assert [e.code for e in sent if isinstance(e, CloseConnection)] == [1009]
    # fragmented: counted while it arrives (wsproto's path)
    data = frame(1, "y" * 600, fin=False) + frame(0, "y" * 600, fin=True)
    _, _, ended, sent = await read_all([data], max_message_size=1000)
    assert isinstance(ended, BadFrame) and [e.code for e in sent if isinstance(e, CloseConnection)] == [1009]


async def test_frames_that_come_with_the_handshake_response(nursery):
    ok = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: {accept}\r\n\r\n")
    got = await _serve_raw(nursery, ok, frame(1, "first") + frame(9, b"hi") + frame(1, "second") + frame(2, b"third"))
    assert got == ["first", "second", b"third"]


async def test_handshake_response_with_bare_line_feeds(nursery):
    # h11 ends a header block at "\n\r?\n"; the split between handshake and frames follows it
    ok = "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: {accept}\n\n"
    got = await _serve_raw(nursery, ok, frame(1, "first") + frame(1, "\n\n"))
    assert got == ["first", "\n\n"]


async def _serve_raw(nursery, response_template, body):
    """A raw TCP server on 127.0.0.1 that answers the handshake and sends ``body`` in the
    same write; returns every message the client read before the server closed."""
    import base64
    import hashlib

    async def handler(stream):
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        await stream.send_all(response_template.format(accept=accept).encode() + body + frame(8, close_payload(1000)))
        await trio.sleep(1)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    conn = await connect(f"ws://127.0.0.1:{port}/", ssl_context=None, max_message_size=2**20)
    got = []
    try:
        with pytest.raises(VenueClosed, match="code 1000"):
            while True:
                got.extend(await conn.receive_batch())
    finally:
        await conn.aclose()
    return got
