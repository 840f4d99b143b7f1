"""A small Redis client on Trio streams: commands packed into one buffer (RESP2),
sent with one write, replies parsed as they arrive. No worker threads, so no
thread competes with the feeds for the GIL, cancellation is Trio's, and nothing
keeps using a connection after it was closed.

Only what the sink and :mod:`trio_books.remote` need: a pipeline of commands,
``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs with a password and a
database number. Any failure of the connection (refused, closed, timed out, a
reply that is not RESP) raises :class:`RedisConnectionError`, after which the
connection is unusable: the caller drops it and opens a new one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import trio

CONNECT_TIMEOUT: Final = 2.0
READ_SIZE: Final = 65536


class RedisError(Exception):
    """Any Redis failure."""


class ReplyError(RedisError):
    """Redis answered a command with an error reply (``-ERR …``)."""


class RedisConnectionError(RedisError):
    """The connection failed; it cannot be used again."""


def pack(commands: Iterable[Sequence[Any]]) -> bytes:
    """Commands in the Redis protocol (RESP), as one buffer."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if type(arg) is bytes else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def pairs(flat: list[Any] | None) -> dict[str, Any]:
    """``[k1, v1, k2, v2, …]`` (HGETALL, a stream entry's fields) as a dict."""
    return dict(zip(flat[::2], flat[1::2])) if flat else {}


def entries(reply: list[Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """A stream range reply (XRANGE/XREVRANGE, one stream of XREAD) as ``(id, fields)``."""
    return [(entry[0], pairs(entry[1])) for entry in reply or ()]


class RedisConnection:
    """One connection. Not shared between tasks: each caller owns its own."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._pos = 0
        self.broken = False

    @classmethod
    async def open(cls, url: str, *, timeout: float = CONNECT_TIMEOUT) -> RedisConnection:
        """Connect, authenticate and select the database of ``url``."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        try:
            with trio.fail_after(timeout):
                if parts.scheme == "unix":
                    stream: trio.abc.Stream = await trio.open_unix_socket(parts.path)
                    db = query.get("db", ["0"])[0]
                else:
                    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 6379)
                    if parts.scheme == "rediss":
                        stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=parts.hostname)
                        await stream.do_handshake()
                    db = parts.path.lstrip("/") or query.get("db", ["0"])[0]
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            raise RedisConnectionError(f"cannot connect to {parts.hostname or parts.path}: {exc or 'timed out'}") from None
        conn = cls(stream)
        setup: list[tuple[Any, ...]] = []
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            setup.append(("AUTH", user, unquote(parts.password)) if user else ("AUTH", unquote(parts.password)))
        if db not in ("", "0"):
            setup.append(("SELECT", db))
        if setup:
            try:
                await conn.execute(setup, timeout=timeout)
            except RedisError:
                await conn.aclose()
                raise
        return conn

    async def execute(self, commands: list[tuple[Any, ...]], *, timeout: float) -> list[Any]:
        return await self.execute_packed(pack(commands), len(commands), timeout=timeout)

    async def execute_packed(self, payload: bytes, count: int, *, timeout: float) -> list[Any]:
        """Send ``count`` packed commands, read their ``count`` replies. An error reply
        is raised as :class:`ReplyError` once every reply was read (the connection
        stays usable); anything else breaks the connection."""
        if self.broken:
            raise RedisConnectionError("connection already failed")
        self.broken = True  # until every reply is read: a cancel in between leaves it half-read
        try:
            with trio.fail_after(timeout):
                await self._stream.send_all(payload)
                replies = [await self._reply() for _ in range(count)]
        except trio.TooSlowError:
            raise RedisConnectionError(f"no reply within {timeout:g} s") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError, IndexError) as exc:
            raise RedisConnectionError(f"{type(exc).__name__}: {exc}") from None
        self.broken = False
        if self._pos > READ_SIZE:
            del self._buf[: self._pos]
            self._pos = 0
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    async def aclose(self) -> None:
        self.broken = True
        with trio.CancelScope(shield=True):
            await self._stream.aclose()

    # --- replies ---------------------------------------------------------------------
    async def _fill(self) -> None:
        data = await self._stream.receive_some(READ_SIZE)
        if not data:
            raise trio.BrokenResourceError("Redis closed the connection")
        self._buf += data

    async def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n", self._pos)) < 0:
            await self._fill()
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    async def _reply(self) -> Any:
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self._buf) < self._pos + n + 2:
                await self._fill()
            value = self._buf[self._pos : self._pos + n].decode("utf-8", "replace")
            self._pos += n + 2
            return value
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [await self._reply() for _ in range(n)]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))
        raise ValueError(f"not a RESP reply: {line[:40]!r}")
