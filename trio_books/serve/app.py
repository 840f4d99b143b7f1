"""The HTTP read API (starlette) and the hypercorn runner (Trio worker)."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
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
from .stream import MAX_DEPTH_PARAM, StreamHub


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

    return app_with_access


def build_app(store: BookStore, clients: ClientCounts | None = None, service: ServiceConfig | None = None) -> Starlette:
    """The API over ``store``: ``/health``, ``/venues``, ``/books/{venue}/{symbol}``,
    ``/metrics`` (Prometheus) and ``/ws`` (streaming)."""
    clients = clients or ClientCounts()
    errors_logged = RateLimiter(window=60.0)
    registry = build_registry(store, clients, service.metrics_books if service is not None else ())
    hub = StreamHub(store, clients)

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

    async def book(request: Request) -> JSON:
        venue = request.path_params["venue"]
        symbol = request.path_params["symbol"]
        raw_depth = request.query_params.get("depth")
        depth: int | None = None
        if raw_depth is not None:
            depth = depth_param(raw_depth)
            if depth is None:
                return _error(400, f"depth must be an integer from 1 to {MAX_DEPTH_PARAM}")
        try:
            entry = store.entry(venue, symbol)
        except UnknownBook as exc:
            return _error(404, str(exc))
        if entry.state is not BookState.LIVE:
            return _error(503, f"book is {entry.state.value}", venue=venue, symbol=symbol, state=entry.state.value)
        return JSON(store.view(venue, symbol, depth).to_json())

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
        await app(scope, receive, send)

    return guarded(counted, service) if service is not None else counted


async def serve_http(app: Any, host: str, port: int, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` with hypercorn's Trio worker until cancelled; ``started(binds)``."""
    cfg = HypercornConfig()
    cfg.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = 1.0
    cfg.h11_max_incomplete_size = 16 * 1024
    cfg.websocket_max_message_size = 64 * 1024
    await hypercorn_serve(app, cfg, task_status=task_status)
