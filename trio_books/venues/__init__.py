"""The venue registry: the only place that lists venues.

Modules are imported on first use, so a venue's code loads only when it runs.
"""

from __future__ import annotations

import importlib
from typing import Final

from ._spec import (
    ConnectionSpec,
    FeedProtocol,
    Heartbeat,
    RestBudget,
    Sequencer,
    Subscription,
    Venue,
)

# venue id -> (module under trio_books.venues, attribute holding the Venue)
_REGISTRY: Final[dict[str, tuple[str, str]]] = {
    "binance_spot": ("binance", "BINANCE_SPOT"),
    "binance_futures": ("binance", "BINANCE_FUTURES"),
    "asterdex_futures": ("asterdex", "ASTERDEX_FUTURES"),
    "bybit_spot": ("bybit", "BYBIT_SPOT"),
    "bybit_futures": ("bybit", "BYBIT_FUTURES"),
    "okx_spot": ("okx", "OKX_SPOT"),
    "coinbase_spot": ("coinbase", "COINBASE_SPOT"),
    "kraken_spot": ("kraken", "KRAKEN_SPOT"),
    "bingx_spot": ("bingx", "BINGX_SPOT"),
}


def available() -> list[str]:
    """Venue ids whose module is present in this installation. A venue module
    that is there but cannot import (a missing dependency) is an error, not a
    venue quietly gone from every run."""
    out = []
    for vid in _REGISTRY:
        try:
            get_venue(vid)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{_REGISTRY[vid][0]}":
                raise
            continue
        out.append(vid)
    return out


VENUE_IDS: Final = tuple(_REGISTRY)


def get_venue(venue_id: str) -> Venue:
    """The :class:`Venue` for ``venue_id``; ``KeyError`` for an unknown id."""
    module, attr = _REGISTRY[venue_id]
    mod = importlib.import_module(f"{__name__}.{module}")
    venue = getattr(mod, attr)
    assert venue.id == venue_id
    return venue


__all__ = ["ConnectionSpec", "FeedProtocol", "Heartbeat", "RestBudget", "Sequencer", "Subscription", "Venue", "VENUE_IDS", "available", "get_venue"]
