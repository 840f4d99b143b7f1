"""One accepted WebSocket connection of a fake venue, and its corked writes
(see :meth:`FakeVenue.corked <trio_books.testing.FakeVenue.corked>`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import BytesMessage, TextMessage
from wsproto.utilities import LocalProtocolError

if TYPE_CHECKING:
    from ._base import FakeVenue


class FakeClient:
    """One accepted WebSocket connection of a fake venue."""

    def __init__(self, venue: "FakeVenue", ws: WebSocketConnection, path: str) -> None:
        self.venue = venue
        self.ws = ws
        self.path = path
        self.symbols: set[str] = set()
        self.silent = False
        self.closed = False
        self.received: list[str | bytes] = []
        self.state: dict[str, Any] = {}  # per-connection protocol state of the subclass

    async def send(self, frame: str | bytes) -> None:
        """Send one frame, unless this connection was silenced; a pending
        'malformed' fault replaces the frame with a truncated one."""
        if self.silent or self.closed:
            return
        if self.venue._malformed_pending:
            self.venue._malformed_pending = False
            frame = frame[: max(1, len(frame) // 2)]
        elif self.venue._duplicate_pending:
            self.venue._duplicate_pending = False
            await self._write(frame)
            if self.closed:
                return
        await self._write(frame)

    async def _write(self, frame: str | bytes) -> None:
        corked = self.venue._corked
        if corked is None:
            try:
                await self.ws.send_message(frame)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = True
            return
        # inside FakeVenue.corked(): encoded now (the bytes send_message would
        # write), written at the end of the block with the connection's other frames
        ws = self.ws
        if ws._close_reason is not None:
            self.closed = True
            return
        message = TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame)
        try:
            corked.setdefault(self, []).append(ws._wsproto.send(message))
        except LocalProtocolError:  # the connection is closing
            self.closed = True

    async def _flush(self, chunks: list[bytes]) -> None:
        """One write of the frames a corked block encoded (trio-websocket's own send
        path, under its lock, without a write per frame)."""
        ws = self.ws
        if self.closed or ws._close_reason is not None:
            self.closed = True
            return
        try:
            async with ws._stream_lock:
                await ws._stream.send_all(b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    async def receive(self) -> str | bytes:
        msg = await self.ws.get_message()
        self.received.append(msg)
        return msg
