"""Configuration: ``config.toml`` into frozen attrs classes, strictly.

Every problem is reported as one line that names the key, e.g.
``venues.binance_spot.depth: expected int, got "x"``.
"""

from __future__ import annotations

import re
import tomllib
import zlib
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from .errors import ConfigError

LOG_LEVELS: Final = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


@attrs.frozen
class ServiceConfig:
    http: str = "127.0.0.1:8080"
    log_level: str = "INFO"
    channel_capacity: int = 5000
    transport: str = "wsproto"
    shard: str = ""  # "K/N": run only this instance's share of the (venue, symbol) pairs
    gc_threshold: int = 10_000  # young-generation GC threshold set at start (0: Python's own GC settings); see gcpolicy.py
    # access: a bearer token for every HTTP route but /health, for /ws (header or ?token=) and,
    # unless metrics_auth is false, /metrics; browsers' Origin must be listed when any is
    auth_token: str = ""
    metrics_auth: bool = True
    allowed_origins: tuple[str, ...] = ()
    metrics_books: tuple[str, ...] = ()  # "venue:SYMBOL": books whose derived figures /metrics exports
    # serving: SIGTERM finishes within shutdown_grace whatever clients do; a client that does not
    # read for send_timeout is dropped; reads handled at once / waiting before 503 (feeds first)
    shutdown_grace: float = 5.0
    send_timeout: float = 10.0
    max_requests: int = 4
    max_waiting_requests: int = 256


@attrs.frozen
class VenueConfig:
    """One venue's settings. Timing keys left out take the venue's documented values."""

    symbols: tuple[str, ...]
    enabled: bool = True
    depth: int | None = None
    ws_url: str | None = None
    rest_url: str | None = None
    watchdog: float | None = None
    ping_interval: float | None = None
    pong_timeout: float | None = None
    connect_timeout: float = 10.0
    sync_timeout: float = 30.0
    snapshot_timeout: float = 10.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    healthy_after: float = 60.0
    # the book failure domain: a book resynced more than this often within the
    # window restarts its whole connection (a systematic fault must not hide)
    book_resync_limit: int = 5
    book_resync_window: float = 300.0
    rejected_retry: float = 60.0  # first retry of a symbol the venue refused (doubles, up to an hour)
    # window-tracked venues: fetch a fresh snapshot when a side provably knows fewer
    # levels than this (default: half of depth; 0: never)
    min_complete_depth: int | None = None
    # REST venues: audit one live book against a fresh snapshot this often per
    # connection, rotating over its books (0: off)
    audit_interval: float = 60.0
    # replace each connection before this long (default: the venue's documented
    # lifetime, e.g. Binance's 24 h), opening the new one first
    lifetime: float | None = None
    # hot standby: this many independent connections keep the same books (1 or 2)
    redundancy: int = 1
    options: Mapping[str, bool | int | float | str] = attrs.field(factory=dict)


@attrs.frozen
class RedisSinkConfig:
    """``[sinks.redis]``: publish every book to Redis Streams."""

    url: str = "redis://127.0.0.1:6379/0"
    depth: int = 50  # levels per side in snapshots
    maxlen: int = 10_000  # XADD MAXLEN ~ per stream
    snapshot_every: int = 100  # a fresh snapshot after this many updates of a book
    queue: int = 10_000  # bounded publish queue (books with pending changes)
    enabled: bool = True


@attrs.frozen
class ParquetSinkConfig:
    """``[sinks.parquet]``: capture every book's changes and snapshots (trio_books.history)."""

    path: str = "history"  # the capture directory
    flush_interval: float = 10.0  # seconds: rows are written at least this often (a crash loses at most this much)
    snapshot_interval: float = 60.0  # seconds: a full snapshot of every changing book this often
    max_rows: int = 100_000  # rows waiting in memory: written early past this
    queue: int = 4  # batches waiting for the writer thread; past this a batch is dropped (a gap, "overflow")
    compression: str = "zstd"
    enabled: bool = True


PARQUET_COMPRESSIONS: Final = ("zstd", "snappy", "gzip", "none")


@attrs.frozen
class SinksConfig:
    redis: RedisSinkConfig | None = None
    parquet: ParquetSinkConfig | None = None


@attrs.frozen
class Config:
    service: ServiceConfig = ServiceConfig()
    venues: Mapping[str, VenueConfig] = attrs.field(factory=dict)
    sinks: SinksConfig = SinksConfig()

    def enabled_venues(self) -> list[tuple[str, VenueConfig]]:
        """Enabled venues, each with only the symbols of this shard (if sharded)."""
        shard = parse_shard(self.service.shard)
        out = []
        for vid, v in self.venues.items():
            if not v.enabled:
                continue
            if shard is not None:
                symbols = tuple(s for s in v.symbols if shard_of(vid, s, shard[1]) == shard[0])
                if not symbols:
                    continue
                v = attrs.evolve(v, symbols=symbols)
            out.append((vid, v))
        return out


def parse_shard(value: str) -> tuple[int, int] | None:
    """``"K/N"`` → ``(K, N)`` (1-based K); ``""`` → None."""
    if not value:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise ConfigError(f'service.shard: expected "K/N" with 1 <= K <= N, got {_show(value)}')
    return int(k), int(n)


def shard_of(venue: str, symbol: str, shards: int) -> int:
    """The 1-based shard that owns ``(venue, symbol)``: stable across processes and hosts."""
    return zlib.crc32(f"{venue}:{symbol}".encode()) % shards + 1


# --- the strict converter ---------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"')[:60] + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "an array"
    return repr(value)[:60]


def _exact(t: type) -> Any:
    name = {bool: "bool", int: "int", float: "number", str: "string"}[t]

    def hook(value: Any, _: Any) -> Any:
        if t is float and type(value) is int:
            return float(value)
        if type(value) is not t:
            raise ValueError(f"expected {name}, got {_show(value)}")
        return value

    return hook


def _option_value(value: Any, _: Any) -> Any:
    if type(value) not in (bool, int, float, str):
        raise ValueError(f"expected a bool, number or string, got {_show(value)}")
    return value


def _symbols(value: Any, _: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise ValueError(f"expected an array of strings, got {_show(value)}")
    for item in value:
        if type(item) is not str or not item.strip():
            raise ValueError(f"expected non-empty strings, got {_show(item)}")
    if not value:
        raise ValueError("must list at least one symbol")
    if len(set(value)) != len(value):
        raise ValueError("lists a symbol twice")
    return tuple(value)


def _table(value: Any) -> None:
    if type(value) is not dict:
        raise ValueError(f"expected a table, got {_show(value)}")


CONVERTER: Final = cattrs.Converter(forbid_extra_keys=True)
for _t in (bool, int, float, str):
    CONVERTER.register_structure_hook(_t, _exact(_t))
CONVERTER.register_structure_hook_func(lambda t: t == tuple[str, ...], _symbols)
CONVERTER.register_structure_hook_func(lambda t: t == bool | int | float | str, _option_value)


def _options_hook(value: Any, _: Any) -> dict[str, Any]:
    _table(value)
    for key, item in value.items():
        try:
            _option_value(item, None)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return dict(value)


def _venues_hook(value: Any, _: Any) -> dict[str, VenueConfig]:
    _table(value)
    out: dict[str, VenueConfig] = {}
    for key, sub in value.items():
        try:
            _table(sub)
            if "symbols" not in sub:
                raise ValueError("symbols: required")
            if "options" in sub and type(sub["options"]) is not dict:
                raise ConfigError(f"venues.{key}.options: expected a table, got {_show(sub['options'])}")
            out[key] = CONVERTER.structure(sub, VenueConfig)
        except ConfigError:
            raise
        except (ValueError, cattrs.BaseValidationError) as exc:
            raise ConfigError(_first_problem(exc, f"venues.{key}")) from None
    return out


CONVERTER.register_structure_hook_func(lambda t: t == Mapping[str, VenueConfig], _venues_hook)
CONVERTER.register_structure_hook_func(lambda t: t == Mapping[str, bool | int | float | str], _options_hook)


def _first_problem(exc: BaseException, path: str) -> str:
    """Walk cattrs' nested error groups down to the first leaf, building the key path."""
    while True:
        if isinstance(exc, ConfigError):  # raised inside a hook: relative to path
            return f"{path}.{exc}" if path else str(exc)
        if isinstance(exc, ForbiddenExtraKeysError):
            keys = sorted(exc.extra_fields)
            where = f"{path}.{keys[0]}" if path else keys[0]
            return f"{where}: unknown key"
        if isinstance(exc, (ClassValidationError, IterableValidationError)):
            notes = getattr(exc, "__notes__", [])
            inner = exc.exceptions[0]
            note = next((n for n in getattr(inner, "__notes__", []) if hasattr(n, "name")), None)
            name = getattr(note, "name", None) or getattr(note, "index", None)
            if name is None:
                # fall back to the note text: "Structuring class X @ attribute y"
                text = next((str(n) for n in notes + getattr(inner, "__notes__", []) if "@ attribute" in str(n)), "")
                name = text.rsplit(" ", 1)[-1] if text else None
            if name is not None:
                path = f"{path}.{name}" if path else str(name)
            exc = inner
            continue
        if isinstance(exc, KeyError):
            return f"{path}: required"
        if isinstance(exc, ValueError) and str(exc).startswith("symbols: required"):
            return f"{path}.symbols: required"
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, TypeError):
            msg = "wrong type"
        return f"{path}: {msg}" if path else msg


def _check_url(value: str | None, key: str, schemes: tuple[str, ...]) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{key}: expected a {' or '.join(s + '://' for s in schemes)} URL with a host, got {_show(value)}")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{key}: bad port in {_show(value)}") from None


def parse_address(value: str, key: str = "service.http") -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; ``[::1]:80`` works too."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected host:port, got {_show(value)}")
    return host, int(port)


def validate(config: Config) -> Config:
    """Checks that need more than types: venue ids, depths, URLs, options, numbers."""
    from .venues import VENUE_IDS, get_venue

    svc = config.service
    parse_address(svc.http)
    parse_shard(svc.shard)
    if svc.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"service.log_level: expected one of {', '.join(LOG_LEVELS)}, got {_show(svc.log_level)}")
    from .transport import TRANSPORTS

    if svc.transport not in TRANSPORTS:
        raise ConfigError(f"service.transport: expected one of {', '.join(TRANSPORTS)}, got {_show(svc.transport)}")
    if not 1 <= svc.channel_capacity <= 10_000_000:
        raise ConfigError(f"service.channel_capacity: must be between 1 and 10000000, got {svc.channel_capacity}")
    if svc.gc_threshold != 0 and not 700 <= svc.gc_threshold <= 10_000_000:
        raise ConfigError(f"service.gc_threshold: must be 0 (Python's settings) or between 700 and 10000000, got {svc.gc_threshold}")
    for book in svc.metrics_books:
        vid, _, symbol = book.partition(":")
        if vid not in config.venues or symbol not in config.venues[vid].symbols:
            raise ConfigError(f'service.metrics_books: {_show(book)} is not "venue:SYMBOL" of a configured book')
    for key, value, low, high in (("shutdown_grace", svc.shutdown_grace, 0.0, 600.0), ("send_timeout", svc.send_timeout, 0.1, 600.0),
                                  ("max_requests", svc.max_requests, 1, 10_000), ("max_waiting_requests", svc.max_waiting_requests, 0, 1_000_000)):
        if not low <= value <= high:
            raise ConfigError(f"service.{key}: must be between {low:g} and {high:g}, got {value}")
    for vid, vc in config.venues.items():
        if vid not in VENUE_IDS:
            raise ConfigError(f"venues.{vid}: unknown venue id (known: {', '.join(VENUE_IDS)})")
        key = f"venues.{vid}"
        try:
            venue = get_venue(vid)
        except ModuleNotFoundError:
            raise ConfigError(f"{key}: venue is not available in this installation") from None
        pattern, form = venue.symbol_form
        for symbol in vc.symbols:
            if not re.fullmatch(pattern, symbol):
                raise ConfigError(f"{key}.symbols: {_show(symbol)} is not in {vid}'s notation ({form})")
        if vc.depth is not None:
            problem = venue.depth_problem(vc.depth)
            if problem:
                raise ConfigError(f"{key}.depth: {problem}, got {vc.depth}")
        _check_url(vc.ws_url, f"{key}.ws_url", ("ws", "wss"))
        _check_url(vc.rest_url, f"{key}.rest_url", ("http", "https"))
        for name in ("watchdog", "ping_interval", "pong_timeout", "connect_timeout", "sync_timeout",
                     "snapshot_timeout", "backoff_base", "backoff_cap", "healthy_after",
                     "book_resync_window", "rejected_retry", "lifetime"):
            value = getattr(vc, name)
            if value is not None and not 0 < value <= 86_400:
                raise ConfigError(f"{key}.{name}: must be a number of seconds above 0 and at most 86400, got {value}")
        if vc.min_complete_depth is not None and not 0 <= vc.min_complete_depth <= (vc.depth or venue.default_depth):
            raise ConfigError(f"{key}.min_complete_depth: must be between 0 and depth, got {vc.min_complete_depth}")
        if not 0 <= vc.audit_interval <= 86_400:
            raise ConfigError(f"{key}.audit_interval: must be 0 (off) or seconds up to 86400, got {vc.audit_interval}")
        if vc.redundancy not in (1, 2):
            raise ConfigError(f"{key}.redundancy: must be 1 or 2, got {vc.redundancy}")
        if not 1 <= vc.book_resync_limit <= 1000:
            raise ConfigError(f"{key}.book_resync_limit: must be between 1 and 1000, got {vc.book_resync_limit}")
        if vc.backoff_base > vc.backoff_cap:
            raise ConfigError(f"{key}.backoff_base: must not exceed backoff_cap ({vc.backoff_cap}), got {vc.backoff_base}")
        for opt, value in vc.options.items():
            want = venue.options.get(opt)
            if want is None:
                known = ", ".join(venue.options) or "none"
                raise ConfigError(f"{key}.options.{opt}: unknown option for {vid} (known: {known})")
            if type(value) is not want and not (want is float and type(value) is int):
                raise ConfigError(f"{key}.options.{opt}: expected {want.__name__}, got {_show(value)}")
    return config


def load_config_text(text: str) -> Config:
    """Parse and validate TOML text; raises :class:`ConfigError` with one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    try:
        for section in raw:
            if section not in ("service", "venues", "sinks"):
                raise ConfigError(f"{section}: unknown key")
        for section in ("service", "venues", "sinks"):
            if section in raw and type(raw[section]) is not dict:
                raise ConfigError(f"{section}: expected a table, got {_show(raw[section])}")
    except ConfigError:
        raise
    try:
        service = CONVERTER.structure(raw.get("service", {}), ServiceConfig)
    except (ValueError, cattrs.BaseValidationError) as exc:
        raise ConfigError(_first_problem(exc, "service")) from None
    venues = _venues_hook(raw.get("venues", {}), None)
    from .sinkconfig import parse_sinks

    sinks = parse_sinks(raw.get("sinks", {}))
    return validate(Config(service=service, venues=venues, sinks=sinks))


def load_config(path: str) -> Config:
    """Read, parse and validate a config file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    config = load_config_text(text)
    if not config.venues:
        raise ConfigError(f"{path}: no venues configured (add a [venues.<id>] table with its symbols; see README, Configuration)")
    return config
