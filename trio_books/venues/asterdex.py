"""AsterDEX futures: the Binance USD-M protocol on AsterDEX's own endpoints.

Aster's futures API is a copy of Binance USD-M (``asterdex/api-docs``,
``V3(Recommended)/EN/aster-finance-futures-api-v3.md``): the same combined
``<symbol>@depth@100ms`` stream, the same ``depthUpdate`` event with
``U``/``u``/``pu``, the same SUBSCRIBE control frames and errors, the same
snapshot ``limit`` values and weights. So this venue is a parameterisation of
:data:`~trio_books.venues.binance.BINANCE_FUTURES`, not new code. Its book is
kept by the documented algorithm (:class:`~trio_books.venues.binance.FuturesChain`):
buffer the stream; fetch ``GET /fapi/v3/depth?symbol=…&limit=…``; drop events
with ``u < lastUpdateId``; the first applied event has
``U <= lastUpdateId <= u``; afterwards every ``pu`` equals the previous ``u``,
otherwise resync.

What is Aster's own:

* hosts ``wss://fstream.asterdex.com`` and ``https://fapi.asterdex.com``;
* **no** ``/public`` route: Binance's 2026 URL split is not in Aster's docs, so
  streams are at ``/stream?streams=…``;
* the V3 REST path ``/fapi/v3/depth`` (moved from ``/fapi/v1`` on 2025-10-31);
* at most **200** streams per connection (Binance: 1024);
* the server pings every **5 minutes** and drops a connection after
  **15 minutes** without a pong (Binance: 3 and 10);
* no ``serverShutdown`` event is documented (the parser still understands it).

The same as Binance: 10 incoming messages per second per connection,
``REQUEST_WEIGHT`` 2400 per minute per IP, 24 h connection lifetime.
"""

from __future__ import annotations

from typing import Final

import attrs

from .binance import BINANCE_FUTURES, USDM, feed_factory, futures_heartbeat

ASTER_PING_INTERVAL: Final = 300.0
ASTER_PONG_DEADLINE: Final = 900.0
"""AsterDEX: the server pings every 5 minutes and disconnects after 15 minutes without a pong."""

ASTER: Final = attrs.evolve(USDM, route="", depth_path="/fapi/v3/depth")
"""The USD-M feed without the ``/public`` route, snapshots from ``/fapi/v3/depth``."""

ASTERDEX_FUTURES: Final = attrs.evolve(
    BINANCE_FUTURES,
    id="asterdex_futures",
    ws_url="wss://fstream.asterdex.com",
    rest_url="https://fapi.asterdex.com",
    connect=feed_factory(ASTER),
    heartbeat=futures_heartbeat(ASTER_PING_INTERVAL),  # our ping every 50 s
    max_symbols_per_connection=200,  # "A single connection can subscribe to a maximum of 200 streams"
    connect_budget=(300, 300.0),  # not documented: the same ceiling as Binance
    max_lifetime=24 * 3600.0,  # connection lifetime 24 h
    market="perp",
)

__all__ = ["ASTER", "ASTERDEX_FUTURES", "ASTER_PING_INTERVAL", "ASTER_PONG_DEADLINE"]
