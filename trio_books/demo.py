"""``trio-books demo``: the shipped fakes for every venue on localhost, and the
service against them, so a newcomer sees the whole system work offline."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import attrs
import trio

from .config import Config, ServiceConfig, load_config_text
from .log import named, setup_logging
from .testing import fake_for
from .venues import available

DEMO_SYMBOLS = {
    "binance_spot": ["BTCUSDT", "ETHUSDT"],
    "binance_futures": ["BTCUSDT", "ETHUSDT"],
    "asterdex_futures": ["BTCUSDT", "ETHUSDT"],
    "bybit_spot": ["BTCUSDT", "ETHUSDT"],
    "bybit_futures": ["BTCUSDT", "ETHUSDT"],
    "okx_spot": ["BTC-USDT", "ETH-USDT"],
    "coinbase_spot": ["BTC-USD", "ETH-USD"],
    "kraken_spot": ["BTC/USD", "ETH/USD"],
    "bingx_spot": ["BTC-USDT", "ETH-USDT"],
}


def run_demo(args: argparse.Namespace, apply_overrides: Callable[..., Config]) -> int:
    base = load_config_text('[service]\nhttp = "127.0.0.1:8080"\n')
    service = apply_overrides(base, args).service
    if getattr(args, "capture", None):
        from .config import ParquetSinkConfig
        from .errors import ConfigError
        from .sinkconfig import capture_dir_problem, check_parquet

        check_parquet(ParquetSinkConfig(path=args.capture))  # e.g. pyarrow missing: one line, exit 2
        problem = capture_dir_problem(args.capture)
        if problem:
            raise ConfigError(problem)
    setup_logging(service.log_level)
    from .cli import run_serving

    return run_serving(service.http, _demo, args, service)


async def _demo(args: argparse.Namespace, service: ServiceConfig) -> None:
    from .cli import _run_service

    log = named("demo")
    async with trio.open_nursery() as nursery:
        tables = []
        for vid in available():
            symbols = DEMO_SYMBOLS.get(vid, ["BTCUSDT"])
            fake = await nursery.start(fake_for(vid)(symbols, rate=10).serve)
            tables.append(fake.config_toml())
        if getattr(args, "capture", None):  # capture the demo's books too (trio_books.history)
            tables.append(f"[sinks.parquet]\npath = {json.dumps(args.capture)}\n")
        config = attrs.evolve(load_config_text("\n".join(tables)), service=service)  # every [service] override holds
        async def service_then_stop(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
            await _run_service(config, task_status=task_status)
            nursery.cancel_scope.cancel()  # SIGINT/SIGTERM stopped the service: stop the fakes too

        binds = await nursery.start(service_then_stop)
        url = binds[0]
        first = next(iter(config.venues))
        symbol = config.venues[first].symbols[0].replace("/", "%2F")
        log.info("demo running: open {}/ (live page), or try {}/health, {}/books/{}/{}?depth=10, {}/metrics, ws {}/ws",
                 url, url, url, first, symbol, url, url.replace("http", "ws"))
        if args.seconds is not None:
            await trio.sleep(args.seconds)
            nursery.cancel_scope.cancel()
