"""The WebSocket and REST seam. Everything above sees only :class:`Connection`
and :func:`fetch`; the library behind them can change without touching venues,
sessions or tests.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from .errors import SnapshotFailed, VenueClosed, VenueRejected


class Connection(Protocol):
    async def receive_batch(self) -> list[str | bytes]:
        """Wait for at least one message; return every message available now."""

    async def send(self, text: str) -> None: ...

    async def ping(self) -> None:
        """Send an RFC 6455 ping and wait for its pong."""


class _TrioWebsocket:
    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws

    async def receive_batch(self) -> list[str | bytes]:
        try:
            return [await self._ws.get_message()]
        except ConnectionClosed as exc:
            raise VenueClosed(_close_text(exc)) from None

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_message(text)
        except ConnectionClosed as exc:
            raise VenueClosed(_close_text(exc)) from None

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except ConnectionClosed as exc:
            raise VenueClosed(_close_text(exc)) from None


def _close_text(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "connection closed"
    text = f"closed by venue: code {reason.code}"
    if reason.reason:
        text += f" ({reason.reason[:120]})"
    return text


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()  # verification on; never disabled
    return _SSL


TRANSPORTS = ("wsproto", "trio-websocket")
DEFAULT_TRANSPORT = "wsproto"


@asynccontextmanager
async def open_connection(
    url: str,
    *,
    max_message_size: int,
    connect_timeout: float,
    transport: str = DEFAULT_TRANSPORT,
) -> AsyncIterator[Connection]:
    """Open a WebSocket; ``ws://`` and ``wss://`` both work. Failures to connect
    raise :class:`VenueClosed` (or :class:`VenueRejected` for an HTTP 4xx); the
    socket closes when the block exits.

    ``transport``: ``"wsproto"`` (ours: every frame of a socket read in one
    batch) or ``"trio-websocket"`` (one message per batch)."""
    if transport == "wsproto":
        async with _open_wsproto(url, max_message_size=max_message_size, connect_timeout=connect_timeout) as conn:
            yield conn
        return
    async with _open_trio_websocket(url, max_message_size=max_message_size, connect_timeout=connect_timeout) as conn:
        yield conn


@asynccontextmanager
async def _open_wsproto(url: str, *, max_message_size: int, connect_timeout: float) -> AsyncIterator[Connection]:
    from .wsclient import connect

    context = _ssl_context() if url.startswith("wss://") else None
    try:
        with trio.fail_after(connect_timeout):
            conn = await connect(url, ssl_context=context, max_message_size=max_message_size)
    except trio.TooSlowError:
        raise VenueClosed(f"cannot connect: no handshake within {connect_timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:  # before OSError: an SSLError is one
        raise VenueClosed(f"cannot connect: TLS: {exc.reason}: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise VenueClosed(f"cannot connect: TLS: {exc.reason or exc}") from None
    except OSError as exc:
        raise VenueClosed(f"cannot connect: {exc.strerror or exc}") from None
    except trio.BrokenResourceError as exc:
        raise VenueClosed(f"cannot connect: {exc}") from None
    try:
        yield conn
    finally:
        await conn.aclose()


@asynccontextmanager
async def _open_trio_websocket(url: str, *, max_message_size: int, connect_timeout: float, message_queue_size: int = 64) -> AsyncIterator[Connection]:
    context = _ssl_context() if url.startswith("wss://") else None
    try:
        async with open_websocket_url(
            url,
            context,
            max_message_size=max_message_size,
            message_queue_size=message_queue_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=2,
        ) as ws:
            yield _TrioWebsocket(ws)
    except ConnectionRejected as exc:
        if 400 <= exc.status_code < 500 and exc.status_code != 429:
            raise VenueRejected(f"connection refused by venue: HTTP {exc.status_code}") from None
        raise VenueClosed(f"connection refused by venue: HTTP {exc.status_code}") from None
    except HandshakeError as exc:
        raise VenueClosed(f"cannot connect: {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise VenueClosed(f"cannot connect: {exc.strerror or exc}") from None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3 * 86_400.0))
    except ValueError:
        return None


async def fetch(client: httpx.AsyncClient, url: str, *, timeout: float) -> bytes:
    """GET ``url`` and return the body. Raises :class:`SnapshotFailed`, which
    carries ``Retry-After`` (429/418 and 5xx alike) for the caller's backoff."""
    try:
        with trio.fail_after(timeout):
            resp = await client.get(url)
    except trio.TooSlowError:
        raise SnapshotFailed(f"snapshot timed out after {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise SnapshotFailed(f"snapshot request failed: {type(exc).__name__}: {str(exc)[:160]}") from None
    if resp.status_code != 200:
        retry = _retry_after(resp)
        if resp.status_code == 418 and retry is None:
            retry = 120.0  # Binance: an IP ban lasts 2 minutes at least
        raise SnapshotFailed(f"snapshot HTTP {resp.status_code}: {resp.text[:160]!r}", retry_after=retry, status=resp.status_code)
    return resp.content


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=True, follow_redirects=False, headers={"User-Agent": "trio-books"})
