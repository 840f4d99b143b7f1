"""Fake AsterDEX futures: the Binance USD-M fake on AsterDEX's paths."""

from __future__ import annotations

from typing import ClassVar

from .binance import FakeBinanceFutures


class FakeAsterdexFutures(FakeBinanceFutures):
    """AsterDEX futures: ``/stream?streams=<sym>@depth@100ms/...`` with no route
    (a ``/public/...`` path is refused like any unknown path), SUBSCRIBE frames,
    ``GET /fapi/v3/depth``; events and snapshots exactly as USD-M's
    (``U``/``u``/``pu``, ``lastUpdateId``, ``E``/``T``). Every fault control is
    the USD-M fake's; at most 200 streams per connection (Binance: 1024)."""

    venue_id: ClassVar[str] = "asterdex_futures"
    route: ClassVar[str] = ""
    depth_path: ClassVar[str] = "/fapi/v3/depth"
    retired_paths: ClassVar[tuple[str, ...]] = ()  # Aster never routed its streams
    max_streams: ClassVar[int] = 200


__all__ = ["FakeAsterdexFutures"]
