"""The fake venues' shared plumbing: one port for HTTP and WebSocket, a
buffered peer that answers pings at once, and the process helpers (used by
``fake_venue.py`` and ``okx_fake.py``)."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from .stream import ws_frame


HOST = "127.0.0.1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK = 64 * 1024
MAX_HEAD = 16 * 1024


class Closed(Exception):
    pass


class Peer:
    """One accepted connection: buffered reads of HTTP heads and client frames,
    and a lock so that pongs never land inside a data chunk."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.send_lock = trio.Lock()

    async def _more(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            raise Closed from None
        if not data:
            raise Closed
        self.buf += data

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                raise Closed from None

    async def read_head(self) -> tuple[str, str, dict[str, str]] | None:
        """``(method, target, headers)`` of the next HTTP request; None at EOF."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise Closed
            try:
                await self._more()
            except Closed:
                return None
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, target, headers

    async def read_frame(self) -> tuple[int, bytes]:
        """The next client frame ``(opcode, payload)`` (clients mask; fragments are
        not used by any client here)."""
        while True:
            buf = self.buf
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                pos = 2
                if n == 126:
                    pos = 4
                elif n == 127:
                    pos = 10
                masked = buf[1] & 0x80
                if len(buf) >= pos + (4 if masked else 0):
                    if n == 126:
                        n = int.from_bytes(buf[2:4], "big")
                    elif n == 127:
                        n = int.from_bytes(buf[2:10], "big")
                    mask = bytes(buf[pos : pos + 4]) if masked else b""
                    start = pos + len(mask)
                    if len(buf) >= start + n:
                        payload = bytes(buf[start : start + n])
                        opcode = buf[0] & 0x0F
                        del buf[: start + n]
                        if mask:
                            key = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
                            payload = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
                        return opcode, payload
            await self._more()


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


async def _respond(peer: Peer, status: int, body: bytes, *, close: bool) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n")
    await peer.send(head.encode() + body)


class Server:
    """Accepts connections, tells REST from WebSocket, and dispatches to a mode."""

    async def handle(self, stream: trio.abc.Stream, tls: ssl.SSLContext | None = None) -> None:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_side=True)
        peer = Peer(stream)
        try:
            if tls is not None:
                try:
                    await stream.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError, OSError):
                    return
            while True:
                req = await peer.read_head()
                if req is None:
                    return
                method, target, headers = req
                if headers.get("upgrade", "").lower() == "websocket":
                    key = headers.get("sec-websocket-key", "")
                    await peer.send(
                        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n").encode())
                    await self.websocket(peer, target)
                    return
                status, body = self.rest(method, target)
                close = headers.get("connection", "").lower() == "close"
                await _respond(peer, status, body, close=close)
                if close:
                    return
        except Closed:
            pass
        finally:
            with trio.move_on_after(0.5) as scope:
                scope.shield = True
                await trio.aclose_forcefully(stream)

    # --- for the modes ----------------------------------------------------------------
    def rest(self, method: str, target: str) -> tuple[int, bytes]:
        raise NotImplementedError

    async def websocket(self, peer: Peer, target: str) -> None:
        raise NotImplementedError

    async def control(self, peer: Peer, on_text=None) -> None:
        """Read client frames until close: answer pings, hand text frames on."""
        while True:
            opcode, payload = await peer.read_frame()
            if opcode == 0x9:
                await peer.send(ws_frame(payload, 0xA))
            elif opcode == 0x8:
                try:
                    await peer.send(ws_frame(payload[:2], 0x8))
                except Closed:
                    pass
                return
            elif opcode == 0x1 and on_text is not None:
                await on_text(payload)


def _split(target: str) -> tuple[list[str], str, dict[str, list[str]]]:
    """``/r/<run>/<pace>/stream?...`` → (prefix parts, endpoint path, query)."""
    parts = urlsplit(target)
    path = parts.path
    for endpoint in ("/stream", "/api/v3/depth", "/api/v3/exchangeInfo"):
        if path.endswith(endpoint):
            prefix = path[: -len(endpoint)].strip("/").split("/") if path != endpoint else []
            return [p for p in prefix if p], endpoint, parse_qs(parts.query)
    return [], path, parse_qs(parts.query)


def _streams(query: dict[str, list[str]]) -> list[str]:
    return [s for s in "/".join(query.get("streams", [])).split("/") if s]


async def _subscribe_reply(peer: Peer, payload: bytes) -> None:
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if isinstance(msg, dict) and msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE"):
        await peer.send(ws_frame(orjson.dumps({"result": None, "id": msg.get("id")})))



async def _listen(nursery: trio.Nursery, server: Server, tls: ssl.SSLContext | None = None) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, host=HOST), functools.partial(server.handle, tls=tls), 0)
    return listeners[0].socket.getsockname()[1]


async def _until_stdin_closes(max_seconds: float) -> None:
    with trio.move_on_after(max_seconds):
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some(1024):
                pass


def _tls(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if not certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx
