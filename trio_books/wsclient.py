"""A small WebSocket client: wsproto driven directly over a Trio stream.

Why: every frame that arrives in one socket read is returned together, so the
reader hands the book task one batch per read instead of paying a task switch
per message (the per-message hop costs more than the book; see README,
"Performance"). It answers pings, enforces a message-size limit while the
message is still arriving, and can negotiate permessage-deflate.

Resource handling: :func:`connect` returns a connection whose socket is closed
by :meth:`WsConnection.aclose` (``open_connection`` in ``transport`` does it).
Error handling: a close from the venue, a broken socket or a protocol error
raises :class:`~trio_books.errors.VenueClosed`; an oversized message raises
:class:`~trio_books.errors.BadFrame` after closing with 1009.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
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
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .errors import BadFrame, VenueClosed, VenueRejected

READ_SIZE = 65536


class WsConnection:
    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_message_size: int) -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_size
        self._send_lock = trio.Lock()
        self._parts: list[str | bytes] = []
        self._part_size = 0
        self._pending_pongs: dict[bytes, trio.Event] = {}
        self._ping_counter = 0
        self._closed = False
        self.extensions: list[str] = []

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise VenueClosed(f"connection lost while sending ({type(exc).__name__})") from None

    async def receive_batch(self) -> list[str | bytes]:
        """Wait for data; return every complete message from that read (maybe several)."""
        out: list[str | bytes] = []
        await self._drain(out)  # frames that arrived together with the handshake
        while not out:
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise VenueClosed(f"connection lost ({type(exc).__name__})") from None
            if not data:
                raise VenueClosed("connection closed by venue without a close frame")
            self._ws.receive_data(data)
            await self._drain(out)
        return out

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
                    try:
                        await self._send(self._ws.send(event.response()))
                    except (VenueClosed, LocalProtocolError):
                        pass
                    self._closed = True
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


async def connect(url: str, *, ssl_context: ssl.SSLContext | None, max_message_size: int, compress: bool = False) -> WsConnection:
    """Open a TCP (and TLS for ``wss``) stream and do the opening handshake."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if secure:
        assert ssl_context is not None
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context, https_compatible=True)
    else:
        stream = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    extensions = [PerMessageDeflate()] if compress else []
    try:
        await stream.send_all(ws.send(Request(host=host_header, target=target, extensions=extensions)))
        conn = WsConnection(stream, ws, max_message_size)
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise VenueClosed("venue closed the connection during the handshake")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    conn.extensions = [e.name for e in event.extensions]
                    # frames that came with the handshake stay in wsproto's buffer
                    return conn
                if isinstance(event, (RejectConnection, RejectData)):
                    status = getattr(event, "status_code", 0)
                    if 400 <= status < 500 and status != 429:
                        raise VenueRejected(f"connection refused by venue: HTTP {status}")
                    raise VenueClosed(f"connection refused by venue: HTTP {status}")
    except RemoteProtocolError as exc:
        await trio.aclose_forcefully(stream)
        raise VenueClosed(f"bad handshake from venue: {exc}") from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
