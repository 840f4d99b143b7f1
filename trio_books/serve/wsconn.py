"""One WebSocket connection of :class:`~trio_books.serve.server.HttpServer`: the
handshake and frames (wsproto) under the ASGI ``websocket`` protocol.

Every send goes through the connection's :class:`~trio_books.serve.peer.Peer`
(bounded by the send timeout; a client that does not read is dropped). A send to
a peer that is gone raises ``ConnectionResetError``, which Starlette turns into
``WebSocketDisconnect``.
"""

from __future__ import annotations

from typing import Any

import h11
import trio
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError as WsProtocolError
from wsproto.utilities import generate_accept_token

from ..log import named
from .peer import Gone

INBOX = 16
"""Complete messages read ahead of the app (then the reader waits: backpressure)."""
GOING_AWAY = 1001


def is_websocket(req: h11.Request) -> bool:
    headers = {k: v for k, v in req.headers}
    return (req.method == b"GET" and b"websocket" in headers.get(b"upgrade", b"").lower()
            and b"sec-websocket-key" in headers)


class _Session:
    def __init__(self, conn: h11.Connection, peer: Any, request: h11.Request, max_message: int) -> None:
        self.conn = conn
        self.peer = peer
        self.key = dict(request.headers)[b"sec-websocket-key"]
        self.max_message = max_message
        self.ws = WsConnection(ConnectionType.SERVER)
        self.inbox_send, self.inbox = trio.open_memory_channel[dict[str, Any]](INBOX)
        self.connected = False
        self.accepted = False
        self.closed = False  # we sent a close (or refused the handshake)
        self.nursery: trio.Nursery | None = None

    async def _out(self, data: bytes) -> None:
        try:
            await self.peer.send(data)
        except Gone:
            raise ConnectionResetError("the client is gone or did not read in time") from None

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        try:
            return await self.inbox.receive()
        except trio.EndOfChannel:
            return {"type": "websocket.disconnect", "code": 1006}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.closed:
            raise ConnectionResetError("the WebSocket is closed")
        if kind == "websocket.accept":
            headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                       (b"sec-websocket-accept", generate_accept_token(self.key))]
            if message.get("subprotocol"):
                headers.append((b"sec-websocket-protocol", message["subprotocol"].encode()))
            headers.extend(message.get("headers") or ())
            data = self.conn.send(h11.InformationalResponse(status_code=101, headers=headers, reason=b"Switching Protocols"))
            trailing, _ = self.conn.trailing_data
            self.accepted = True
            await self._out(data)
            if trailing:
                self.ws.receive_data(trailing)
            assert self.nursery is not None
            self.nursery.start_soon(self._read)
        elif kind == "websocket.close":
            await self.close(message.get("code", 1000), message.get("reason") or "")
        elif kind == "websocket.send" and self.accepted:
            text = message.get("text")
            event = TextMessage(data=text) if text is not None else BytesMessage(data=message.get("bytes") or b"")
            await self._out(self.ws.send(event))

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        if not self.accepted:  # refused before the handshake: HTTP 403
            body = b'{"error":"forbidden"}'
            data = self.conn.send(h11.Response(status_code=403, reason=b"Forbidden", headers=[(b"content-type", b"application/json"),
                                                                         (b"content-length", str(len(body)).encode()),
                                                                         (b"connection", b"close")]))
            await self._out(data + self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage()))
        elif self.ws.state is ConnectionState.OPEN:
            await self._out(self.ws.send(CloseConnection(code=code, reason=reason)))

    async def _deliver_end(self, code: int) -> None:
        try:  # never wait for an app that stopped reading: it sees the end of the inbox anyway
            self.inbox_send.send_nowait({"type": "websocket.disconnect", "code": code})
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass
        self.inbox_send.close()

    async def _read(self) -> None:
        try:
            await self._frames()
        except (ConnectionResetError, WsProtocolError):
            await self._deliver_end(1006)

    async def _frames(self) -> None:
        parts: list[Any] = []
        size = 0
        while True:
            for event in self.ws.events():
                if isinstance(event, Ping):
                    await self._out(self.ws.send(event.response()))
                elif isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > self.max_message:
                        await self.close(1009, "message too large")
                        await self._deliver_end(1009)
                        return
                    if event.message_finished:
                        text = isinstance(event, TextMessage)
                        joined = ("" if text else b"").join(parts)
                        parts, size = [], 0
                        await self.inbox_send.send({"type": "websocket.receive", "text" if text else "bytes": joined})
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self.closed = True
                        await self._out(self.ws.send(event.response()))
                    await self._deliver_end(event.code)
                    return
            data = await self.peer.receive()
            if not data:
                await self._deliver_end(1006)
                return
            self.ws.receive_data(data)

    async def shutdown_on(self, closing: trio.Event) -> None:
        await closing.wait()
        try:
            if self.accepted:
                await self.close(GOING_AWAY, "server shutting down")
        except (ConnectionResetError, WsProtocolError):
            pass
        await self._deliver_end(GOING_AWAY)


async def serve_websocket(app: Any, scope: dict[str, Any], request: h11.Request, conn: h11.Connection, peer: Any,
                          closing: trio.Event, max_message: int) -> None:
    """Run ``app`` on one WebSocket until it returns, the peer goes, or ``closing`` is set."""
    session = _Session(conn, peer, request, max_message)
    peer.lock = trio.Lock()  # from here the reader (pongs, closes) and the app both send
    async with trio.open_nursery() as nursery:
        session.nursery = nursery
        nursery.start_soon(session.shutdown_on, closing)
        try:
            await app(scope, session.receive, session.send)
            await session.close(1000)  # an app that returned without closing
        except* ConnectionResetError:  # the peer went (alone, or inside the handler's own nursery's group)
            pass
        except* Exception as group:  # a bug in a handler: logged, the client gets 1011
            exc = group.exceptions[0]
            named("http").opt(exception=exc).error("/ws handler failed: {}: {}", type(exc).__name__, str(exc)[:200])
            try:
                await session.close(1011, "internal error")
            except ConnectionResetError:
                pass
        nursery.cancel_scope.cancel()
