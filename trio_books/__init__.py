"""trio-books: live, exact L2 order books from crypto exchanges, on Trio.

Public API (everything else is private)::

    async with trio_books.open_books(trio_books.load_config("config.toml")) as books:
        await books.wait_live("binance_spot", "BTCUSDT")
        view = books.view("binance_spot", "BTCUSDT", depth=10)
"""

from __future__ import annotations

from loguru import logger as _logger

from .config import Config, ServiceConfig, VenueConfig
from .config import load_config as load_config
from .config import load_config_text as load_config_text
from .errors import (
    AttemptFailure,
    ChannelOverflow,
    ChecksumMismatch,
    ConfigError,
    NotLive,
    SequenceGap,
    StaleFeed,
    TrioBooksError,
    UnknownBook,
)
from .gcpolicy import tune_gc
from .model import BookState, Level
from .remote import RemoteBooks, open_remote_books
from .runner import Books, VenueStatistics, open_books
from .store import BookView

__all__ = [
    "AttemptFailure",
    "BookState",
    "BookView",
    "Books",
    "ChannelOverflow",
    "ChecksumMismatch",
    "Config",
    "ConfigError",
    "Level",
    "NotLive",
    "SequenceGap",
    "ServiceConfig",
    "StaleFeed",
    "TrioBooksError",
    "UnknownBook",
    "VenueConfig",
    "VenueStatistics",
    "load_config",
    "load_config_text",
    "open_books",
    "open_remote_books",
    "tune_gc",
    "RemoteBooks",
]

# loguru's convention for libraries: silent until the application says otherwise
# (``logger.enable("trio_books")``); the service does so in setup_logging().
_logger.disable("trio_books")
