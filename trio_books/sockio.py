"""The feed connections' byte stream: a non-blocking socket, with TLS done here over
``ssl.SSLObject`` for ``wss://``.

Why not ``trio.SocketStream``/``trio.SSLStream``: on a trickle feed (one event per
frame, as real venues send) the cost per event is the cost per wake-up. Those
layers try the socket before waiting (a failing ``recv`` per read), yield once
more after a read that succeeded at once, and the TLS layer hands over one TLS
record per call, so two frames in one socket read woke the read task twice. Here a
read is always: one wait until the socket is readable (the read task's only
step), one ``recv``, and every record of that read decrypted into one result.
Measured in ``benchmarks.trickle`` (README, "Performance").

Contract (what :class:`~trio_books.wsclient.WsConnection` needs of a stream):
``receive_some`` waits, then returns the bytes of one socket read (decrypted;
``b""`` at the end of the stream, including a TLS peer that closed without
``close_notify``); ``send_all`` sends everything or raises; ``aclose`` closes at
once (the WebSocket layer says goodbye before it). Errors are
``trio.BrokenResourceError`` (the connection failed: reset, TLS error) and
``trio.ClosedResourceError`` (closed here). Every call waits at least once for
the socket or checkpoints, so a loop over ``receive_some`` never starves other
tasks, and every wait can be cancelled; a send cancelled half-way leaves the
connection broken (the next call raises).
"""

from __future__ import annotations

import socket
import ssl

import trio
from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

RECV_SIZE = 262144
"""Bytes read from the socket at most per read (and decrypted at most per TLS read call)."""


class SocketStream:
    """One connected socket (TLS when ``tls`` is given); see the module's contract."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None = None, incoming: ssl.MemoryBIO | None = None,
                 outgoing: ssl.MemoryBIO | None = None) -> None:
        self._sock = sock
        self._tls = tls
        self._in = incoming
        self._out = outgoing
        self._eof = False
        self._broken: str | None = None  # why the connection broke (the next call raises it)
        self._closed = False
        self._view = memoryview(bytearray(RECV_SIZE))  # one buffer for every read, not an allocation per read
        # one sender at a time: bytes taken from the TLS layer go out whole and in order
        # (the read path sends too, rarely: a TLS 1.3 key update's answer)
        self._sending = trio.Lock()

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the connection is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError(self._broken)

    async def _recv(self) -> memoryview:
        """Wait until the socket is readable, then read what is there into the stream's
        buffer (empty: EOF); valid until the next read."""
        while True:
            await wait_readable(self._sock)
            try:
                return self._view[: self._sock.recv_into(self._view)]
            except BlockingIOError:
                continue  # woken without data (it happens): wait again
            except OSError as exc:
                self._broken = f"{type(exc).__name__}: {exc}"
                raise trio.BrokenResourceError(self._broken) from None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The bytes of one socket read (``max_bytes`` is not a bound: TLS returns every
        record that read completed)."""
        self._check()
        if self._tls is None:
            return bytes(await self._recv())
        while True:
            if self._eof:
                return b""
            data = await self._recv()
            if data:
                self._in.write(data)  # type: ignore[union-attr]
            else:
                self._in.write_eof()  # type: ignore[union-attr]
            plain = self._decrypt()
            if self._out.pending:  # type: ignore[union-attr]
                async with self._sending:
                    await self._flush()  # a TLS 1.3 key update's answer and the like
            if plain:
                return plain
            if not data:
                self._eof = True

    def _decrypt(self) -> bytes:
        tls = self._tls
        assert tls is not None
        parts = []
        try:
            while chunk := tls.read(RECV_SIZE):
                parts.append(chunk)
            self._eof = True  # b"": the peer's close_notify
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or an end without it
            self._eof = True
        except ssl.SSLError as exc:  # what was decrypted before it is still returned
            self._broken = f"TLS: {exc.reason or exc}"
            if not parts:
                raise trio.BrokenResourceError(self._broken) from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        async with self._sending:  # (a checkpoint)
            if self._tls is None:
                await self._send_raw(data)
                return
            try:
                self._tls.write(data)
            except ssl.SSLError as exc:
                self._broken = f"TLS: {exc.reason or exc}"
                raise trio.BrokenResourceError(self._broken) from None
            await self._flush()

    async def _flush(self) -> None:
        await self._send_raw(self._out.read())  # type: ignore[union-attr]

    async def _send_raw(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        done = False
        try:
            while view:
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    await wait_writable(self._sock)
                    continue
                view = view[sent:]
            done = True
        except OSError as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            raise trio.BrokenResourceError(self._broken) from None
        finally:
            if not done and self._broken is None:  # cancelled: part of a message (or a TLS record) may have gone out
                self._broken = "a send was cancelled half-way"

    async def handshake(self) -> None:
        """The TLS handshake (certificate and host name checked by the context)."""
        tls = self._tls
        assert tls is not None
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._recv()
                if not data:
                    raise trio.BrokenResourceError("the server closed the connection during the TLS handshake")
                self._in.write(data)  # type: ignore[union-attr]
                continue
            await self._flush()
            return

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            notify_closing(self._sock)
            self._sock.close()
        await checkpoint()


async def open_stream(host: str, port: int, ssl_context: ssl.SSLContext | None) -> SocketStream:
    """Connect (Trio's happy eyeballs over every address of ``host``), then do the TLS
    handshake when a context is given. ``ssl.SSLError`` (a certificate that does not
    verify, say) and ``OSError`` propagate."""
    tcp = await trio.open_tcp_stream(host, port)  # also sets TCP_NODELAY
    sock = socket.socket(fileno=tcp.socket.detach())
    sock.setblocking(False)
    if ssl_context is None:
        return SocketStream(sock)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    stream = SocketStream(sock, ssl_context.wrap_bio(incoming, outgoing, server_hostname=host), incoming, outgoing)
    try:
        await stream.handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
