"""A small WebSocket client: wsproto driven directly over a Trio stream.

Why: every frame that arrives in one socket read is returned together, so the
reader hands the book task one batch per read instead of paying a task switch
per message (the per-message hop costs more than the book; see README,
"Performance"). It answers pings, enforces a message-size limit while the
message is still arriving; it negotiates no extension (no venue needs one), so
a frame with an RSV bit set is a protocol error.

The hot path does not go through wsproto: received bytes are kept in our own
buffer and split into frames here (RFC 6455, section 5.2). A *plain* frame — a
whole unfragmented text or binary message from the server: FIN set, no RSV bit,
unmasked, the minimal length form, and no fragmented message in progress — is
cut out and decoded directly (text must be valid UTF-8, else the connection
fails with 1007 as wsproto would fail it). Every other frame (ping, pong,
close, fragments, anything malformed) is handed to wsproto
whole-frame-wise, in order: once its first byte went to wsproto, every further
byte of that frame goes there too, so wsproto is at a frame boundary (its
buffer empty) whenever we look at a header ourselves. wsproto keeps its job
for everything it is given — answering pings, reassembly, the
close handshake and every protocol error.

Resource handling: :func:`connect` returns a connection whose socket is closed
by :meth:`WsConnection.aclose` (``open_connection`` in ``transport`` does it).
Error handling: a close from the venue, a broken socket or a protocol error
raises :class:`~trio_books.errors.VenueClosed`; an oversized message raises
:class:`~trio_books.errors.BadFrame` after closing with 1009.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .errors import BadFrame, VenueClosed, VenueRejected
from .sockio import SocketStream, open_stream

READ_SIZE = 65536
MAX_HANDSHAKE = 65536
"""Bytes of HTTP response headers accepted during the opening handshake."""
_HEAD_END = re.compile(rb"\n\r?\n")
"""The blank line that ends an HTTP header block (h11's own rule, which also accepts bare LF)."""


class WsConnection:
    def __init__(self, stream: SocketStream | trio.abc.Stream, ws: WSConnection, max_message_size: int, buffered: bytes = b"") -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_size
        self._send_lock = trio.Lock()
        self._parts: list[str | bytes] = []
        self._part_size = 0
        self._pending_pongs: dict[bytes, trio.Event] = {}
        self._ping_counter = 0
        self._closed = False
        # received bytes not yet split into frames (the first ones may have come with the handshake)
        self._buf = bytearray(buffered)
        # bytes of the current frame that still belong to wsproto (0: at a frame boundary)
        self._owed = 0
        # a fragmented message is in progress (it is wsproto's until its last frame)
        self._fragmented = False
        # how the connection ended, when messages before the end were still to be returned
        self._failure: VenueClosed | BadFrame | None = None

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise VenueClosed(f"connection lost while sending ({exc or type(exc).__name__})") from None

    async def receive_batch(self) -> list[str | bytes]:
        """Wait for data; return every complete message from that read (maybe several).

        Messages that arrived before a close (or a protocol error) in the same
        read are returned first; the next call raises."""
        if self._failure is not None:
            raise self._failure
        out: list[str | bytes] = []
        buf = self._buf
        try:
            if buf:
                await self._split(out)  # frames that arrived together with the handshake
            while not out:
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise VenueClosed(f"connection lost ({exc or type(exc).__name__})") from None
                if not data:
                    raise VenueClosed("connection closed by venue without a close frame")
                buf += data
                await self._split(out)
        except (VenueClosed, BadFrame) as exc:
            if not out:
                raise
            self._failure = exc
        return out

    async def _split(self, out: list[str | bytes]) -> None:
        """Take every whole plain frame out of the buffer, in order; feed the
        bytes of any other frame to wsproto (and act on its events)."""
        buf = self._buf
        end = len(buf)
        pos = 0
        try:
            while True:
                if self._owed:
                    take = min(self._owed, end - pos)
                    if not take:
                        break
                    try:
                        self._ws.receive_data(buf[pos : pos + take])
                    except LocalProtocolError:
                        raise VenueClosed("connection is closing") from None
                    pos += take
                    self._owed -= take
                    await self._drain(out)
                    continue
                if end - pos < 2:
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                n = b1 & 0x7F
                head = 2
                minimal = True
                if n >= 126:
                    if n == 126:
                        if end - pos < 4:
                            break
                        n = (buf[pos + 2] << 8) | buf[pos + 3]
                        head = 4
                        minimal = n >= 126
                    else:
                        if end - pos < 10:
                            break
                        n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        head = 10
                        minimal = 0xFFFF < n < 1 << 63
                opcode = b0 & 0x0F
                # FIN set, RSV bits clear, text or binary, unmasked, minimal length, not inside a fragmented message
                if (b0 & 0xF0) == 0x80 and (opcode == 1 or opcode == 2) and b1 < 0x80 and minimal and not self._fragmented:
                    if n > self._max:
                        await self._close(1009, "message too big")
                        raise BadFrame(f"message larger than {self._max} bytes")
                    stop = pos + head + n
                    if stop > end:
                        break  # wait for the rest of the frame
                    if opcode == 1:
                        try:
                            out.append(buf[pos + head : stop].decode())
                        except UnicodeDecodeError as exc:
                            await self._close(1007, "invalid UTF-8")
                            raise VenueClosed(f"WebSocket protocol error from venue: text frame is not UTF-8 ({exc.reason})") from None
                    else:
                        out.append(bytes(buf[pos + head : stop]))
                    pos = stop
                    continue
                # Not plain: the whole frame is wsproto's (it answers, reassembles,
                # inflates, or fails the connection on a protocol error).
                if opcode <= 2:
                    self._fragmented = not (b0 & 0x80)
                self._owed = head + (4 if b1 & 0x80 else 0) + n
        finally:
            del buf[:pos]

    async def _drain(self, out: list[str | bytes]) -> None:
        try:
            for event in self._ws.events():
                kind = type(event)
                if kind is TextMessage or kind is BytesMessage:
                    self._parts.append(event.data)
                    self._part_size += len(event.data)
                    if self._part_size > self._max:
                        await self._close(1009, "message too big")
                        raise BadFrame(f"message larger than {self._max} bytes")
                    if event.message_finished:
                        parts = self._parts
                        out.append(parts[0] if len(parts) == 1 else ("" if kind is TextMessage else b"").join(parts))  # type: ignore[arg-type]
                        self._parts = []
                        self._part_size = 0
                elif kind is Ping:
                    await self._send(self._ws.send(event.response()))
                elif kind is Pong:
                    waiter = self._pending_pongs.pop(bytes(event.payload), None)
                    if waiter is not None:
                        waiter.set()
                elif kind is CloseConnection:
                    code, reason = event.code, event.reason
                    # wsproto reports a protocol error of the venue as a close
                    # event without a close frame (its state stays OPEN)
                    violated = self._ws.state is ConnectionState.OPEN
                    try:
                        await self._send(self._ws.send(event.response()))
                    except (VenueClosed, LocalProtocolError):
                        pass
                    self._closed = True
                    if violated:
                        raise VenueClosed(f"WebSocket protocol error from venue: {reason[:160]} (closed with {code})")
                    text = f"closed by venue: code {code}" + (f" ({reason[:120]})" if reason else "")
                    raise VenueClosed(text)
        except RemoteProtocolError as exc:
            raise VenueClosed(f"WebSocket protocol error from venue: {exc}") from None

    async def send(self, text: str) -> None:
        try:
            data = self._ws.send(TextMessage(data=text))
        except LocalProtocolError:
            raise VenueClosed("connection is closing") from None
        await self._send(data)

    async def ping(self) -> None:
        """Send a ping and wait for its pong (the caller bounds the wait)."""
        self._ping_counter += 1
        payload = self._ping_counter.to_bytes(4, "big")
        waiter = trio.Event()
        self._pending_pongs[payload] = waiter
        try:
            await self._send(self._ws.send(Ping(payload=payload)))
        except LocalProtocolError:
            raise VenueClosed("connection is closing") from None
        await waiter.wait()

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send(self._ws.send(CloseConnection(code=code, reason=reason)))
        except (VenueClosed, LocalProtocolError):
            pass

    async def aclose(self) -> None:
        """Say goodbye politely (bounded), then close the socket."""
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await self._close(1000, "bye")
        await trio.aclose_forcefully(self._stream)


async def connect(url: str, *, ssl_context: ssl.SSLContext | None, max_message_size: int) -> WsConnection:
    """Open a TCP (and TLS for ``wss``) stream (``sockio``) and do the opening handshake."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream = await open_stream(host, port, ssl_context if secure else None)
    ws = WSConnection(ConnectionType.CLIENT)
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    try:
        await stream.send_all(ws.send(Request(host=host_header, target=target)))
        # wsproto gets the response head only (up to its blank line); whatever
        # follows it is frames, kept for the connection's own splitter.
        pending = bytearray()
        while True:
            found = _HEAD_END.search(pending)
            if found is None:
                if len(pending) > MAX_HANDSHAKE:
                    raise VenueClosed("bad handshake from venue: response headers too long")
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise VenueClosed("venue closed the connection during the handshake")
                pending += data
                continue
            head_end = found.end()
            ws.receive_data(bytes(pending[:head_end]))
            del pending[:head_end]
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    conn = WsConnection(stream, ws, max_message_size, bytes(pending))
                    return conn
                if isinstance(event, (RejectConnection, RejectData)):
                    status = getattr(event, "status_code", 0)
                    if 400 <= status < 500 and status != 429:
                        raise VenueRejected(f"connection refused by venue: HTTP {status}")
                    raise VenueClosed(f"connection refused by venue: HTTP {status}")
            # an interim (1xx) response: the real one follows
    except RemoteProtocolError as exc:
        await trio.aclose_forcefully(stream)
        raise VenueClosed(f"bad handshake from venue: {exc}") from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
