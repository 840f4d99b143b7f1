"""The reference floor of the raw-ceiling rows (``raw-minimal``): a plain socket and a
20-line frame splitter, benchmark-only code (see ``clients.run_raw``)."""

from __future__ import annotations

import base64
import os
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio


class _Minimal:
    """A reference floor for the transport, not a client anyone should use: a
    plain-socket WebSocket reader that only splits unmasked, unfragmented,
    uncompressed server frames (all this fake sends) and decodes text. It shows
    what socket reads + framing + UTF-8 cost without a general WebSocket library."""

    def __init__(self, stream: trio.abc.Stream, buf: bytearray) -> None:
        self.stream = stream
        self.buf = buf

    async def receive_batch(self) -> list[str | bytes]:
        out: list[str | bytes] = []
        while not out:
            buf = self.buf
            pos, end = 0, len(buf)
            while end - pos >= 2:
                n = buf[pos + 1] & 0x7F
                head = 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                if end - pos < head + n:
                    break
                opcode = buf[pos] & 0x0F
                payload = buf[pos + head : pos + head + n]
                if opcode == 0x1:
                    out.append(payload.decode())
                elif opcode == 0x2:
                    out.append(bytes(payload))
                elif opcode == 0x8:
                    raise EOFError("closed by the server")
                pos += head + n
            del buf[:pos]
            if not out:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("connection closed")
                buf += data
        return out


@asynccontextmanager
async def open_minimal(url: str, **_ignored):
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    target = parts.path + ("?" + parts.query if parts.query else "")
    await stream.send_all((f"GET {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("closed during the handshake")
        buf += data
    end = buf.index(b"\r\n\r\n")
    if not buf.startswith(b"HTTP/1.1 101"):
        raise EOFError(bytes(buf[:80]).decode(errors="replace"))
    del buf[: end + 4]
    try:
        yield _Minimal(stream, buf)
    finally:
        await trio.aclose_forcefully(stream)
