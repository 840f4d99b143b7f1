"""A small HTTP/1.1 and WebSocket server on Trio, h11 and wsproto, for an ASGI app.

Why not hypercorn: it sends with cancellation shielded, so a client that stops
reading holds a send (and SIGTERM) forever. Here every send is bounded by
``send_timeout`` and a connection whose send timed out or failed is closed at
once: no more work for a peer that is gone or does not read. Requests on one
connection are handled one after another and read only when the previous
response is out, so pipelining is bounded by the socket buffers.
:meth:`HttpServer.shutdown` stops accepting, lets the requests in flight finish
(each connection closes after its current response; ``/ws`` clients get close
1001) and cancels whatever is left when the grace is over.

The hot read skips h11 and ASGI: when the app has a synchronous
``app.fast(target, headers)`` (the complete response to a plain GET, or None),
a plain keep-alive GET (:mod:`.http1`) it answers is read, answered and sent in
the connection task's one step (one wait for the socket, one ``recv``, one
``send``); every other request, and any byte h11 must judge, goes through h11
and the app.

Readers never crowd out the feeds: at most ``max_active`` app requests are
handled at once, and at most ``max_active`` fast answers are given per scheduler
round (:mod:`.turns`); the rest wait their turn, so a round never holds more
than that many readers' work and the feeds keep their pace. When ``max_waiting`` requests already wait, another is
refused at once with 503 and ``Retry-After``.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11
import trio

from ..log import RateLimiter, named
from .http1 import head_end, plain_get
from .peer import Gone, Peer
from .turns import Turns
from .wsconn import is_websocket, serve_websocket

KEEP_ALIVE = 5.0
"""An HTTP connection idle (or sending one request) for this long is closed."""
MAX_HEADERS = 16 * 1024
MAX_BODY = 64 * 1024
PHRASES = {int(code): code.phrase.encode() for code in HTTPStatus}
BUSY = (b'{"error":"too many requests in progress, retry shortly"}', [(b"retry-after", b"1")])
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                 b"retry-after: 1\r\n\r\n%b" % (len(BUSY[0]), BUSY[0]))


class HttpServer:
    """``await server.serve(host, port)`` (``nursery.start``: started with the
    bound URLs) serves ``app`` until cancelled or :meth:`shutdown`."""

    def __init__(self, app: Any, *, send_timeout: float = 10.0, max_active: int = 4, max_waiting: int = 256,
                 ws_max_message: int = 64 * 1024) -> None:
        self.app = app
        self.send_timeout = send_timeout
        self.ws_max_message = ws_max_message
        self.closing = False
        self.connections = 0
        self.shed = 0  # requests refused with 503 (busy)
        self._active = trio.Semaphore(max_active)
        self._turns = Turns(max_active)  # the hot reads' turns (instrumenting the run while connections are open)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._peers: set[Peer] = set()
        self._fast = getattr(app, "fast", None)
        self._ws_closing: set[trio.Event] = set()
        self._hot_peers: set[Peer] = set()  # connections that may send hot reads (not WebSockets)
        self._none_open = trio.Event()
        self._none_open.set()
        self._scope: trio.CancelScope | None = None
        self._errors = RateLimiter(window=60.0)

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)  # OSError when it cannot bind
        urls = []
        for listener in listeners:
            addr = listener.socket.getsockname()
            urls.append(f"http://[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"http://{addr[0]}:{addr[1]}")
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            accepting = trio.CancelScope()
            self._accepting = accepting
            nursery.start_soon(self._accept_all, listeners, nursery, accepting)
            nursery.start_soon(self._turns.nudge)
            task_status.started(urls)

    async def _accept_all(self, listeners: list[trio.SocketListener], nursery: trio.Nursery, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(self._accept, listener, nursery)
        for listener in listeners:
            await trio.aclose_forcefully(listener)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: said once a minute, then wait a little rather than spin
                if self._errors.check(("accept", exc.errno)) is not None:
                    named("http").error("cannot accept connections: {}", exc.strerror or exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def wait_closed(self) -> None:
        """Wait until no connection is open."""
        await self._none_open.wait()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; finish the requests in flight and close every connection
        within ``grace`` seconds, then cancel what is left."""
        self.closing = True
        if self._scope is None:
            return
        self._accepting.cancel()
        for peer in list(self._peers):
            if peer.idle:  # waiting for a next request
                peer.scope.cancel()
        for closing in list(self._ws_closing):
            closing.set()
        with trio.move_on_after(grace):
            await self.wait_closed()
        self._scope.cancel()

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = Peer(stream, self.send_timeout)
        if self.connections == 0:
            self._none_open = trio.Event()
        self.connections += 1
        self._hot(peer, True)
        self._peers.add(peer)
        try:
            with peer.scope:  # cancelled: idle too long, a send timed out, or shutdown
                await self._http(peer)
        except* (Gone, h11.ProtocolError):
            pass  # the peer went, did not read, or broke HTTP: the connection ends
        except* Exception as group:  # a bug: this connection ends, the server goes on
            exc = group.exceptions[0]
            if self._errors.check((type(exc).__name__, str(exc)[:200])) is not None:
                named("http").opt(exception=exc).error("connection failed: {}: {}", type(exc).__name__, str(exc)[:200])
        finally:
            self._peers.discard(peer)
            self.connections -= 1
            self._hot(peer, False)
            if self.connections == 0:
                self._none_open.set()
            peer.close()

    def _hot(self, peer: Peer, on: bool) -> None:
        """While a connection that may send hot reads is open, the turns' instrument is
        installed (it costs every scheduler round, feeds included); a WebSocket never
        sends one, so its connection stops counting at the upgrade."""
        if on:
            if not self._hot_peers:
                self._turns.install()
            self._hot_peers.add(peer)
        elif peer in self._hot_peers:
            self._hot_peers.discard(peer)
            if not self._hot_peers:
                self._turns.uninstall()

    async def _http(self, peer: Peer) -> None:
        """Requests one after another: a plain GET the app answers at once (``app.fast``)
        is read and answered here, in one step; every other request goes through h11."""
        buf, eof = b"", False
        while not self.closing:
            peer.scope.deadline = trio.current_time() + KEEP_ALIVE  # for the request's head and body
            end = head_end(buf)
            if end == 0:
                peer.idle = True
                try:
                    while end == 0 and not eof:
                        data = await peer.receive()
                        eof = not data
                        buf += data
                        end = head_end(buf)
                finally:
                    peer.idle = False
                if end == 0 and not buf:
                    return  # the peer closed between requests
            else:
                await trio.lowlevel.checkpoint()  # a pipelined request: still one request per step
            if end > 0 and self._fast is not None and not self.closing:
                plain = plain_get(buf[:end - 4])
                if plain is not None and not await self._fast_turn():
                    buf = buf[end:]
                    self.shed += 1
                    await peer.send(BUSY_RESPONSE)
                    continue
                response = self._fast(plain[0], plain[1]) if plain is not None and not self.closing else None
                if response is not None:
                    buf = buf[end:]
                    await peer.send(response)
                    continue
            rest = await self._h11_request(peer, buf, eof)
            if rest is None:
                return
            buf, eof = rest

    async def _fast_turn(self) -> bool:
        """Wait for a hot read's turn (False: shed, too many wait)."""
        if self._turns.take_now():
            return True
        if self._waiting + len(self._turns) >= self._max_waiting:
            return False
        await self._turns.wait()
        return True

    async def _h11_request(self, peer: Peer, buf: bytes, eof: bool) -> tuple[bytes, bool] | None:
        """One request read by h11 from ``buf`` and the socket, handled; the bytes
        after it (and whether the peer closed) when the connection goes on."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        conn.receive_data(buf)
        if eof:
            conn.receive_data(b"")
        peer.idle = True
        try:
            event = await self._next_event(conn, peer)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._respond(conn, peer, status, b'{"error":"bad request"}', [], close=True)
            return None
        finally:
            peer.idle = False
        if not isinstance(event, h11.Request):
            return None  # the peer closed
        body = await self._body(conn, peer)
        peer.scope.deadline = math.inf
        if body is None:
            await self._respond(conn, peer, 413, b'{"error":"request body too large"}', [], close=True)
            return None
        scope = self._scope_of(event, peer)
        if scope["type"] == "websocket":
            self._hot(peer, False)
            closing = trio.Event()
            self._ws_closing.add(closing)
            try:
                await serve_websocket(self.app, scope, event, conn, peer, closing, self.ws_max_message)
            finally:
                self._ws_closing.discard(closing)
            return None
        await self._request(conn, peer, scope, body)
        if peer.gone or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return None
        return conn.trailing_data

    async def _next_event(self, conn: h11.Connection, peer: Peer) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await peer.receive())
                continue
            return event

    async def _body(self, conn: h11.Connection, peer: Peer) -> bytes | None:
        chunks, size = [], 0
        while True:
            event = await self._next_event(conn, peer)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    return None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise Gone

    def _scope_of(self, req: h11.Request, peer: Peer) -> dict[str, Any]:
        raw_path, _, query = req.target.partition(b"?")
        headers = list(req.headers)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": req.http_version.decode(),
            "method": req.method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": peer.client,
            "server": peer.server,
        }
        if is_websocket(req):
            scope.update(type="websocket", scheme="ws", subprotocols=[
                p.strip() for k, v in headers if k == b"sec-websocket-protocol" for p in v.decode("latin-1").split(",") if p.strip()])
        return scope

    async def _request(self, conn: h11.Connection, peer: Peer, scope: dict[str, Any], body: bytes) -> None:
        try:
            self._active.acquire_nowait()
        except trio.WouldBlock:
            if self._waiting + len(self._turns) >= self._max_waiting:
                self.shed += 1
                await self._respond(conn, peer, 503, BUSY[0], BUSY[1], close=self.closing)
                return
            self._waiting += 1
            try:
                await self._active.acquire()
            finally:
                self._waiting -= 1
        try:
            await self._asgi(conn, peer, scope, body)
        finally:
            self._active.release()

    async def _asgi(self, conn: h11.Connection, peer: Peer, scope: dict[str, Any], body: bytes) -> None:
        head_only = scope["method"] == "HEAD"
        started: dict[str, Any] = {}
        done = trio.Event()
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                started.update(message)
                return
            if kind != "http.response.body" or done.is_set():
                return
            more = message.get("more_body", False)
            data = b""
            if not started.get("sent"):
                started["sent"] = True
                headers = list(started.get("headers", ()))
                if self.closing:
                    headers.append((b"connection", b"close"))
                status = started["status"]
                data = conn.send(h11.Response(status_code=status, headers=headers, reason=PHRASES.get(status, b"")))
            chunk = message.get("body", b"")
            if chunk and not head_only:
                data += conn.send(h11.Data(data=chunk))
            if not more:
                data += conn.send(h11.EndOfMessage())
                done.set()
            try:
                await peer.send(data)
            except Gone:
                pass  # no exception into the app (Starlette would log it as a 500): the connection ends after it

        try:
            await self.app(scope, receive, send)
        except Gone:
            raise
        except Exception:
            # the app's own error handler answered 500 and logged it (Starlette re-raises after that)
            if not started.get("sent"):
                await self._respond(conn, peer, 500, b'{"error":"internal error"}', [], close=True)
            return
        if not done.is_set():
            if started.get("sent"):
                raise Gone  # a response cut short: the connection cannot go on
            await self._respond(conn, peer, 500, b'{"error":"internal error"}', [], close=True)

    async def _respond(self, conn: h11.Connection, peer: Peer, status: int, body: bytes,
                       headers: list[tuple[bytes, bytes]], *, close: bool) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
        if close:
            headers.append((b"connection", b"close"))
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=PHRASES.get(status, b""))) + conn.send(h11.Data(data=body))
        await peer.send(data + conn.send(h11.EndOfMessage()))

