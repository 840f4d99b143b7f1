"""``[sinks.*]`` tables of ``config.toml``, strictly (the shapes are in :mod:`trio_books.config`)."""

from __future__ import annotations

import os
from typing import Any

import cattrs

from .config import (CONVERTER, PARQUET_COMPRESSIONS, ParquetSinkConfig, RedisSinkConfig, SinksConfig, _check_url,
                     _first_problem, _show)
from .errors import ConfigError


def _sink_table(raw_sinks: dict, name: str, cls: type) -> Any:
    if type(raw_sinks[name]) is not dict:
        raise ConfigError(f"sinks.{name}: expected a table, got {_show(raw_sinks[name])}")
    try:
        return CONVERTER.structure(raw_sinks[name], cls)
    except (ValueError, cattrs.BaseValidationError) as exc:
        raise ConfigError(_first_problem(exc, f"sinks.{name}")) from None


def _needs(module: str, sink: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f'sinks.{sink}: the {module} library is not installed (pip install "trio-books[{extra}]")')


def parse_sinks(raw_sinks: dict) -> SinksConfig:
    for key in raw_sinks:
        if key not in ("redis", "parquet"):
            raise ConfigError(f"sinks.{key}: unknown sink (known: redis, parquet)")
    redis_cfg = parquet_cfg = None
    if "redis" in raw_sinks:
        redis_cfg = _sink_table(raw_sinks, "redis", RedisSinkConfig)
        _check_url(redis_cfg.url, "sinks.redis.url", ("redis", "rediss", "unix"))
        for name in ("depth", "maxlen", "snapshot_every", "queue"):
            if getattr(redis_cfg, name) < 1:
                raise ConfigError(f"sinks.redis.{name}: must be at least 1, got {getattr(redis_cfg, name)}")
    if "parquet" in raw_sinks:
        parquet_cfg = _sink_table(raw_sinks, "parquet", ParquetSinkConfig)
        check_parquet(parquet_cfg)
    return SinksConfig(redis=redis_cfg, parquet=parquet_cfg)


def check_parquet(cfg: ParquetSinkConfig) -> None:
    """``[sinks.parquet]`` values (also for ``trio-books capture --out``)."""
    if not cfg.path.strip():
        raise ConfigError("sinks.parquet.path: must name a directory")
    for name, top in (("flush_interval", 3600), ("snapshot_interval", 86_400)):
        if not 0 < getattr(cfg, name) <= top:
            raise ConfigError(f"sinks.parquet.{name}: must be seconds above 0 and at most {top}, got {getattr(cfg, name)}")
    if not 1000 <= cfg.max_rows <= 10_000_000:
        raise ConfigError(f"sinks.parquet.max_rows: must be between 1000 and 10000000, got {cfg.max_rows}")
    if not 1 <= cfg.queue <= 1000:
        raise ConfigError(f"sinks.parquet.queue: must be between 1 and 1000, got {cfg.queue}")
    if cfg.compression not in PARQUET_COMPRESSIONS:
        raise ConfigError(f"sinks.parquet.compression: must be one of {', '.join(PARQUET_COMPRESSIONS)}, got {_show(cfg.compression)}")
    if cfg.enabled:
        _needs("pyarrow", "parquet", "history")


def capture_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot hold a capture (created if missing), or None."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"sinks.parquet.path: cannot create {path} ({exc.strerror or exc})"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"sinks.parquet.path: cannot write to {path}"
    return None
