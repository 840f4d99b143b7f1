"""One accepted HTTP connection's socket, for :class:`~trio_books.serve.server.HttpServer`.

A receive is one wait until the socket is readable and one ``recv`` (the
connection task's only step per request on a keep-alive connection); a send is
tried at once and waits (bounded by the send timeout) only for what the socket
buffer did not take, so a response that fits costs no scheduler pass. After a
failed or timed-out send the socket is closed and every later send raises
:class:`Gone`.
"""

from __future__ import annotations

import math
import socket

import trio
from trio.lowlevel import notify_closing, wait_readable, wait_writable

RECV = 16 * 1024


class Gone(Exception):
    """The peer closed, reset, or did not read within the send timeout."""


class Peer:
    """One accepted socket (non-blocking, owned here: :meth:`close` closes it)."""

    def __init__(self, stream: trio.SocketStream, timeout: float) -> None:
        self.sock = socket.socket(fileno=stream.socket.detach())
        self.sock.setblocking(False)
        self.timeout = timeout
        self.gone = False
        self.idle = False  # waiting for the first byte of a next request (shutdown cancels such a wait)
        # the connection's one cancel scope: its deadline is the keep-alive while a request is
        # awaited, the send timeout while a send waits, and none while a request is handled
        self.scope = trio.CancelScope()
        self.lock: trio.Lock | None = None  # set when more than one task sends (a WebSocket)
        try:
            host, port = self.sock.getpeername()[:2]
            self.client: tuple[str, int] | None = (host, port)
            self.server: tuple[str, int] | None = self.sock.getsockname()[:2]
        except OSError:
            self.client = self.server = None

    async def send(self, data: bytes) -> None:
        if self.gone:
            raise Gone
        if self.lock is None:
            await self._send(data)
        else:
            async with self.lock:
                await self._send(data)

    async def _send(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            raise Gone from None
        if sent < len(data):
            await self._send_rest(memoryview(data)[sent:])

    async def _send_rest(self, rest: memoryview) -> None:
        ok = False
        self.scope.deadline = trio.current_time() + self.timeout  # past it, the whole connection is cut
        try:
            while rest:
                await wait_writable(self.sock)
                try:
                    rest = rest[self.sock.send(rest):]
                except BlockingIOError:
                    continue
            ok = True
        except (OSError, trio.ClosedResourceError):
            raise Gone from None
        finally:
            self.scope.deadline = math.inf
            if not ok:  # a send cut short leaves a half-written frame: the connection is over
                self.close()

    async def receive(self) -> bytes:
        """Wait for the socket, then the bytes of one read; ``b""`` at the end (or a failure)."""
        while not self.gone:
            try:
                await wait_readable(self.sock)
            except trio.ClosedResourceError:
                return b""
            try:
                return self.sock.recv(RECV)
            except BlockingIOError:
                continue  # woken without data: wait again
            except OSError:
                return b""
        return b""

    def close(self) -> None:
        """Close the socket now (tasks waiting on it are woken); idempotent."""
        if self.sock.fileno() != -1:
            notify_closing(self.sock)
            self.sock.close()
        self.gone = True
