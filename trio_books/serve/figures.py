"""Derived figures over HTTP and ``/ws``: ``/books/{venue}/{symbol}/stats``,
``/books/{venue}/{symbol}/cost``, ``/consolidated/{instrument}/cost`` and the
``"stats"`` stream kind (the arithmetic is :mod:`trio_books.analytics`).

Each answer is computed from one view of the book, taken in one step, and
carries that book's ``seq`` (and ``update_id`` when the venue has one). The
request logic is plain functions returning ``(status, body)``; the Starlette
routes at the bottom only adapt them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import attrs
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..analytics import SIDES, parse_amount
from ..errors import UnknownBook
from ..model import BookState
from ..store import BookStore, BookView

DEFAULT_BANDS: Final = ("10", "50", "100")
DEFAULT_TOP: Final = 5
MAX_TOP: Final = 5000
MAX_BANDS: Final = 16

Answer = tuple[int, dict[str, Any]]


@attrs.frozen
class StatsQuery:
    """Validated ``/stats`` parameters: imbalance over ``top`` levels, depth within ``bands`` bps."""

    top: int = DEFAULT_TOP
    bands: tuple[str, ...] = DEFAULT_BANDS


def stats_query(levels: Any, bps: Any) -> StatsQuery | str:
    """``levels`` (an int or its digits) and ``bps`` (a comma-separated string or a list)
    into a :class:`StatsQuery`, or the one-line problem."""
    if type(levels) is str and levels.isascii() and levels.isdigit():
        levels = int(levels)
    if levels is not None and (type(levels) is not int or not 1 <= levels <= MAX_TOP):
        return f"levels must be an integer from 1 to {MAX_TOP}"
    top = DEFAULT_TOP if levels is None else levels
    if bps is None:
        return StatsQuery(top)
    items = bps.split(",") if type(bps) is str else bps
    if type(items) is not list or not 1 <= len(items) <= MAX_BANDS:
        return f"bps must be a comma-separated list of 1 to {MAX_BANDS} numbers"
    bands = []
    for item in items:
        value = parse_amount(str(item) if type(item) in (int, str) else None)
        if value is None or value > 10_000:
            return f"bps: each band must be a number above 0 and at most 10000, got {str(item)[:20]!r}"
        bands.append(str(item))
    return StatsQuery(top, tuple(dict.fromkeys(bands)))


def header(view: BookView) -> dict[str, Any]:
    """Which book, and which state of it, a figure was computed from."""
    out: dict[str, Any] = {"venue": view.venue, "symbol": view.symbol, "state": view.state.value, "seq": view.seq}
    if view.update_id is not None:
        out["update_id"] = view.update_id
    if view.exchange_ts is not None:
        out["exchange_ts"] = view.exchange_ts
    out["received_ts"] = view.received_ts
    return out


def _live_view(store: BookStore, venue: str, symbol: str) -> BookView | Answer:
    """The whole proven book, or the answer ``/books`` gives for it (404, 503)."""
    try:
        entry = store.entry(venue, symbol)
    except UnknownBook as exc:
        return 404, {"error": str(exc)}
    if entry.state is not BookState.LIVE or entry.book is None:
        return 503, {"error": f"book is {entry.state.value}", "venue": venue, "symbol": symbol, "state": entry.state.value}
    return store.view(venue, symbol)


def book_stats(store: BookStore, venue: str, symbol: str, params: Mapping[str, str]) -> Answer:
    query = stats_query(params.get("levels"), params.get("bps"))
    if isinstance(query, str):
        return 400, {"error": query}
    view = _live_view(store, venue, symbol)
    if isinstance(view, tuple):
        return view
    return 200, {**header(view), **view.stats(query.top, query.bands)}


def cost_params(params: Mapping[str, str]) -> tuple[str, Decimal | None, Decimal | None] | str:
    side = params.get("side")
    if side not in SIDES:
        return "side must be buy or sell"
    raw_base, raw_quote = params.get("base"), params.get("quote")
    if (raw_base is None) == (raw_quote is None):
        return "give exactly one of base= or quote="
    amount = parse_amount(raw_base if raw_base is not None else raw_quote)
    if amount is None:
        return f"{'base' if raw_base is not None else 'quote'} must be a plain decimal number above 0, e.g. 1.5"
    return (side, amount, None) if raw_base is not None else (side, None, amount)


def book_cost(store: BookStore, venue: str, symbol: str, params: Mapping[str, str]) -> Answer:
    parsed = cost_params(params)
    if isinstance(parsed, str):
        return 400, {"error": parsed}
    view = _live_view(store, venue, symbol)
    if isinstance(view, tuple):
        return view
    side, base, quote = parsed
    return 200, {**header(view), **view.cost(side, base=base, quote=quote)}


def consolidated_cost(store: BookStore, instrument: str, params: Mapping[str, str]) -> Answer:
    from ..consolidate import MARKETS, consolidated_cost, split_symbol

    if split_symbol(instrument) is None:
        return 400, {"error": "instrument must look like BASE-QUOTE, e.g. BTC-USD"}
    parsed = cost_params(params)
    if isinstance(parsed, str):
        return 400, {"error": parsed}
    markets = frozenset(params.get("markets", "spot").split(","))
    if not markets <= set(MARKETS):
        return 400, {"error": f"markets must be a comma-separated list of {', '.join(MARKETS)}"}
    only = params.get("venues")
    side, base, quote = parsed
    body = consolidated_cost(store, instrument, side, base=base, quote=quote,
                             venues=set(only.split(",")) if only else None, markets=markets)
    if not body["venues"]:
        return (503 if body["left_out"] else 404), {**body, "error": "no live book for this instrument"}
    return 200, body


class StatsCache:
    """The ``/ws`` ``stats`` figures of a live book, computed once per book state for
    every subscriber asking the same (one entry per book: bounded by the books)."""

    def __init__(self, store: BookStore) -> None:
        self.store = store
        self._last: dict[tuple[str, str], tuple[Any, int, int, tuple[str, ...], dict[str, Any]]] = {}

    def figures(self, venue: str, symbol: str, query: StatsQuery) -> dict[str, Any] | None:
        """The figures (without the message header), None while the book is not live."""
        entry = self.store.entry(venue, symbol)
        if entry.state is not BookState.LIVE or entry.book is None:
            return None
        hit = self._last.get((venue, symbol))
        if hit is not None and hit[0] is entry and hit[1:4] == (entry.seq, query.top, query.bands):
            return hit[4]  # (an entry of a reloaded configuration counts its seq anew: compared by identity)
        view = self.store.view(venue, symbol)
        out = {"update_id": view.update_id, "exchange_ts": view.exchange_ts, "version": view.seq,
               **view.stats(query.top, query.bands)}
        self._last[(venue, symbol)] = (entry, view.seq, query.top, query.bands, out)
        return out


def comparable(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures without what moves with every update (ids, timestamps): a ``stats``
    message goes out when this changes."""
    return {k: v for k, v in figures.items() if k not in ("update_id", "exchange_ts", "version")}


# --- the Starlette routes ---------------------------------------------------------------
class _JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def figure_routes(store: BookStore) -> list[Route]:
    """Routes to list before ``/books/{venue}/{symbol:path}`` and ``/consolidated/{instrument:path}``."""

    async def stats(request: Request) -> Response:
        p = request.path_params
        return _JSON(*reversed(book_stats(store, p["venue"], p["symbol"], request.query_params)))

    async def cost(request: Request) -> Response:
        p = request.path_params
        return _JSON(*reversed(book_cost(store, p["venue"], p["symbol"], request.query_params)))

    async def consolidated(request: Request) -> Response:
        return _JSON(*reversed(consolidated_cost(store, request.path_params["instrument"], request.query_params)))

    return [Route("/books/{venue}/{symbol:path}/stats", stats), Route("/books/{venue}/{symbol:path}/cost", cost),
            Route("/consolidated/{instrument:path}/cost", consolidated)]
