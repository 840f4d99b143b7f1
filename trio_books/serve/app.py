"""The HTTP read API (starlette), served by :class:`~trio_books.serve.server.HttpServer`."""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
import trio
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from ..config import ServiceConfig
from ..errors import UnknownBook
from ..log import RateLimiter, named
from ..model import BookState
from ..runner import venue_statistics
from ..store import BookStore
from .figures import figure_routes
from .metrics import ClientCounts, build_registry
from .page import page_routes
from .http1 import ok_response
from .server import HttpServer
from .stream import MAX_DEPTH_PARAM, SEND_TIMEOUT, StreamHub

FAST_BOOK = re.compile(r"/books/([^/]+)/(.+)")  # as the route's {venue}/{symbol:path}
FAST_TARGET = re.compile(rb"/books/([^/?%]+)/([^?%]+)(?:\?(.*))?")  # the same, on a raw target without escapes
FAST_QUERY = re.compile(rb"(?:depth=([0-9]+))?")


def depth_param(raw: str) -> int | None:
    """A ``depth`` query value: ASCII digits only (``str.isdigit`` also takes
    ``"²"``, which ``int`` refuses), 1 to :data:`MAX_DEPTH_PARAM`; None otherwise."""
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DEPTH_PARAM:
        return None
    return int(raw)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, **extra: Any) -> JSON:
    return JSON({"error": message, **extra}, status_code=status)


def _book_health(e: Any) -> dict[str, Any]:
    """One book's failure domain at a glance: state, resyncs by reason, why it is not live."""
    out: dict[str, Any] = {"state": e.state.value, "resyncs": dict(e.resyncs)}
    if e.error is not None and e.state is not BookState.LIVE:
        out["error"] = e.error
    return out


def guarded(app: Any, service: ServiceConfig) -> Any:
    """Access control in front of ``app``: with ``service.auth_token``, every route
    but ``/health`` (and ``/metrics`` when ``metrics_auth`` is false) needs
    ``Authorization: Bearer <token>`` or, for browsers' WebSockets, ``?token=``;
    with ``allowed_origins``, a request that carries an ``Origin`` header must
    come from one of them. Refusals: 401/403 in JSON, a WebSocket closed 1008."""
    token = service.auth_token.encode()
    origins = {o.encode() for o in service.allowed_origins}
    if not token and not origins:
        return app  # nothing to check: no cost per request
    inner_fast = getattr(app, "fast", None)

    def fast(target: bytes, headers: Any) -> bytes | None:
        """The hot read only for a request the checks let through (``/books`` always
        needs the token); any refusal is the routes' to answer."""
        fields = dict(headers)
        origin = fields.get(b"origin")
        if origins and origin is not None and origin not in origins:
            return None
        if token and not hmac.compare_digest(fields.get(b"authorization", b"").removeprefix(b"Bearer ").strip(), token):
            return None
        return inner_fast(target, headers)

    async def app_with_access(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        origin = headers.get(b"origin")
        refusal = None
        if origins and origin is not None and origin not in origins:
            refusal = (403, "origin not allowed")
        elif token and scope["path"] != "/health" and not (scope["path"] == "/metrics" and not service.metrics_auth):
            supplied = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
            if not supplied:
                query = dict(pair.partition(b"=")[::2] for pair in scope.get("query_string", b"").split(b"&"))
                supplied = query.get(b"token", b"")
            if not hmac.compare_digest(supplied, token):
                refusal = (401, "a valid bearer token is required")
        if refusal is None:
            await app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[1]})
        else:
            await _error(refusal[0], refusal[1])(scope, receive, send)

    if inner_fast is not None:
        app_with_access.fast = fast  # type: ignore[attr-defined]
    return app_with_access


def build_app(store: BookStore, clients: ClientCounts | None = None, service: ServiceConfig | None = None) -> Starlette:
    """The API over ``store``: ``/health``, ``/venues``, ``/books/{venue}/{symbol}``,
    ``/metrics`` (Prometheus) and ``/ws`` (streaming)."""
    clients = clients or ClientCounts()
    errors_logged = RateLimiter(window=60.0)
    registry = build_registry(store, clients, service.metrics_books if service is not None else ())
    hub = StreamHub(store, clients, send_timeout=service.send_timeout if service is not None else SEND_TIMEOUT)
    bodies = BodyCache()

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> JSON:
        venues = {}
        any_live = False
        degraded = False
        for venue in store.venues:
            st = venue_statistics(store, venue)
            venues[venue] = {
                "state": st.state,
                "connected": st.connected,
                "last_message_age_s": None if st.last_message_age_s is None else round(st.last_message_age_s, 3),
                "reconnects": st.reconnects,
                "resyncs": st.resyncs,
                "failures": st.failures,
                "rest_errors": st.rest_errors,
                "ignored": st.ignored,
                "last_error": st.last_error,
                "books": st.books,
                "book_resyncs": st.book_resyncs,
                "book_errors": st.book_errors,
                "audits": st.audits,
            }
            any_live = any_live or any(s == BookState.LIVE.value for s in st.books.values())
            degraded = degraded or st.state != "live"
        status = "ok" if any_live and not degraded else "degraded"
        body = {"status": status, "venues": venues}
        if store.shard:
            body["shard"] = store.shard
        if store.sinks:
            body["sinks"] = {k: v.to_json() for k, v in store.sinks.items() if hasattr(v, "to_json")}
        return JSON(body, status_code=200 if any_live else 503)

    async def venues(request: Request) -> JSON:
        out = {}
        for venue in store.venues:
            out[venue] = {
                "state": venue_statistics(store, venue).state,
                "symbols": {s: store.state(venue, s).value for s in store.symbols(venue)},
                "books": {e.symbol: _book_health(e) for e in store.entries() if e.venue == venue},
            }
        return JSON({"venues": out})

    def book_answer(venue: str, symbol: str, raw_depth: str | None) -> tuple[int, bytes]:
        """``GET /books/{venue}/{symbol}``: status and JSON body (the route's and the fast path's)."""
        depth: int | None = None
        if raw_depth is not None:
            depth = depth_param(raw_depth)
            if depth is None:
                return 400, orjson.dumps({"error": f"depth must be an integer from 1 to {MAX_DEPTH_PARAM}"})
        try:
            entry = store.entry(venue, symbol)
        except UnknownBook as exc:
            return 404, orjson.dumps({"error": str(exc)})
        if entry.state is not BookState.LIVE:
            return 503, orjson.dumps({"error": f"book is {entry.state.value}", "venue": venue, "symbol": symbol,
                                      "state": entry.state.value})
        return 200, bodies.get(store, entry, depth)

    async def book(request: Request) -> Response:
        status, body = book_answer(request.path_params["venue"], request.path_params["symbol"], request.query_params.get("depth"))
        return Response(body, status_code=status, media_type="application/json")

    async def consolidated_view(request: Request) -> JSON:
        from ..consolidate import MARKETS, consolidated, split_symbol

        instrument = request.path_params["instrument"]
        if split_symbol(instrument) is None:
            return _error(400, "instrument must look like BASE-QUOTE, e.g. BTC-USD")
        depth = depth_param(request.query_params.get("depth", "20"))
        if depth is None:
            return _error(400, f"depth must be an integer from 1 to {MAX_DEPTH_PARAM}")
        only = request.query_params.get("venues")
        venues_filter = set(only.split(",")) if only else None
        markets = frozenset(request.query_params.get("markets", "spot").split(","))
        if not markets <= set(MARKETS):
            return _error(400, f"markets must be a comma-separated list of {', '.join(MARKETS)}")
        body = consolidated(store, instrument, depth, venues_filter, markets)
        if not body["venues"]:
            return JSON({**body, "error": "no live book for this instrument"}, status_code=503 if body["left_out"] else 404)
        return JSON(body)

    async def not_found(request: Request, exc: Exception) -> JSON:
        return _error(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> JSON:
        return _error(405, f"method {request.method} not allowed here")

    async def server_error(request: Request, exc: Exception) -> JSON:
        """A bug: logged with its traceback (once per distinct error a minute), answered in JSON."""
        if errors_logged.check((type(exc).__name__, str(exc)[:200])) is not None:
            named("http").opt(exception=exc).error("{} {} failed: {}: {}", request.method, request.url.path,
                                                               type(exc).__name__, str(exc)[:200])
        return _error(500, "internal error (logged)")

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/venues", venues),
            *figure_routes(store),
            Route("/books/{venue}/{symbol:path}", book),
            Route("/metrics", metrics),
            Route("/consolidated/{instrument:path}", consolidated_view),
            WebSocketRoute("/ws", hub.handle),
            *page_routes(),
        ],
        middleware=[],
        exception_handlers={404: not_found, 405: not_allowed, Exception: server_error},
    )

    async def counted(scope, receive, send):
        if scope["type"] == "http":
            clients.http_requests += 1
            # the hot read skips Starlette's layers; anything unusual (and any error) takes the route
            path = FAST_BOOK.fullmatch(scope["path"]) if scope["method"] == "GET" else None
            query = FAST_QUERY.fullmatch(scope["query_string"]) if path is not None else None
            if query is not None:
                try:
                    status, body = book_answer(path[1], path[2], query[1] and query[1].decode())
                except Exception:
                    status = 0
                if status == 200:  # otherwise the routes answer (/books/…/stats and /cost among them)
                    await send({"type": "http.response.start", "status": status,
                                "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await app(scope, receive, send)

    def fast(target: bytes, headers: Any) -> bytes | None:
        """The server's hot read (no ASGI, no Starlette): the complete response to a
        plain ``GET /books/…`` that gets a 200; None for anything else (the routes answer)."""
        path = FAST_TARGET.fullmatch(target)
        query = FAST_QUERY.fullmatch(path[3] or b"") if path is not None else None
        if query is None:
            return None
        try:
            entry = store.entry(path[1].decode(), path[2].decode())
            depth = depth_param(query[1].decode()) if query[1] is not None else 0
        except Exception:  # unknown book (and any surprise): the routes answer
            return None
        if depth is None or entry.state is not BookState.LIVE:
            return None
        try:
            response = bodies.response(store, entry, depth or None)
        except Exception:  # a bug: the route answers (and logs it)
            return None
        clients.http_requests += 1
        return response

    counted.fast = fast  # type: ignore[attr-defined]
    return guarded(counted, service) if service is not None else counted


class BodyCache:
    """One encoded ``/books`` body per (book, depth), shared by every reader until
    the book's ``seq`` moves (any applied change or state change bumps it) or
    another book object is published for it."""

    LIMIT = 4096  # (book, depth) pairs kept; past that the cache starts over

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str, int | None], list[Any]] = {}  # [seq, book, body, response or None]

    def _hit(self, store: BookStore, entry: Any, depth: int | None) -> list[Any]:
        key = (entry.venue, entry.symbol, depth)
        hit = self._bodies.get(key)
        if hit is not None and hit[0] == entry.seq and hit[1] is entry.book:
            return hit
        body = orjson.dumps(store.view(entry.venue, entry.symbol, depth).to_json())
        if len(self._bodies) >= self.LIMIT:
            self._bodies.clear()
        hit = self._bodies[key] = [entry.seq, entry.book, body, None]
        return hit

    def get(self, store: BookStore, entry: Any, depth: int | None) -> bytes:
        return self._hit(store, entry, depth)[2]

    def response(self, store: BookStore, entry: Any, depth: int | None) -> bytes:
        """The whole ``200`` HTTP/1.1 response with that body, built once per body."""
        hit = self._hit(store, entry, depth)
        if hit[3] is None:
            hit[3] = ok_response(hit[2])
        return hit[3]


async def serve_http(app: Any, host: str, port: int, *, service: ServiceConfig | None = None,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; ``started(urls)``."""
    await http_server(app, service).serve(host, port, task_status=task_status)


def http_server(app: Any, service: ServiceConfig | None = None) -> HttpServer:
    service = service or ServiceConfig()
    return HttpServer(app, send_timeout=service.send_timeout, max_active=service.max_requests,
                      max_waiting=service.max_waiting_requests)
