"""Protocol-faithful fake venues for tests, shipped with the package.

Each fake serves a real WebSocket (and, where the venue has one, a real HTTP
REST endpoint) on 127.0.0.1 with a random port, holds the true book, and has
fault controls (drop, silence, sequence gap, malformed frame, checksum
corruption, subscribe rejection, REST failures). Use them in your own tests::

    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"]).serve)
    config = load_config_text(fake.config_toml())
"""

from __future__ import annotations

import importlib
from typing import Final

from ._base import FakeClient, FakeVenue

# venue id -> (module, class); loaded on first use
_FAKES: Final[dict[str, tuple[str, str]]] = {
    "binance_spot": ("binance", "FakeBinanceSpot"),
    "binance_futures": ("binance", "FakeBinanceFutures"),
    "asterdex_futures": ("asterdex", "FakeAsterdexFutures"),
    "bybit_spot": ("bybit", "FakeBybitSpot"),
    "bybit_futures": ("bybit", "FakeBybitFutures"),
    "okx_spot": ("okx", "FakeOkxSpot"),
    "coinbase_spot": ("coinbase", "FakeCoinbase"),
    "kraken_spot": ("kraken", "FakeKraken"),
    "bingx_spot": ("bingx", "FakeBingx"),
}


def fake_for(venue_id: str) -> type[FakeVenue]:
    """The fake class of a venue id."""
    module, name = _FAKES[venue_id]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __getattr__(name: str):  # FakeBinanceSpot etc. as attributes of this package
    for module, cls in _FAKES.values():
        if cls == name:
            return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    raise AttributeError(name)


__all__ = ["FakeClient", "FakeVenue", "fake_for"]
