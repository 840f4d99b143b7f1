"""``trio-books`` command line: ``run``, ``capture``, ``history``, ``check-config``, …"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from .config import Config, ServiceConfig, load_config, parse_address, validate
from .errors import ConfigError
from .log import named, setup_logging

ENV_PREFIX = "TRIO_BOOKS_"


def apply_overrides(config: Config, args: argparse.Namespace, environ: dict[str, str] | os._Environ = os.environ) -> Config:
    """``[service]`` settings from ``TRIO_BOOKS_<KEY>`` variables, then CLI flags (which win)."""
    changes: dict[str, object] = {}
    for field in attrs.fields(ServiceConfig):
        env_key = ENV_PREFIX + field.name.upper()
        if env_key in environ:
            value = environ[env_key]
            if field.type in (int, "int"):
                try:
                    changes[field.name] = int(value)
                except ValueError:
                    raise ConfigError(f"{env_key}: expected int, got {value!r}") from None
            elif field.type in (float, "float"):
                try:
                    changes[field.name] = float(value)
                except ValueError:
                    raise ConfigError(f"{env_key}: expected a number, got {value!r}") from None
            elif field.type in (bool, "bool"):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ConfigError(f"{env_key}: expected true or false, got {value!r}")
                changes[field.name] = value.lower() in ("true", "1")
            elif field.type in (tuple[str, ...], "tuple[str, ...]"):
                changes[field.name] = tuple(v.strip() for v in value.split(",") if v.strip())
            else:
                changes[field.name] = value
        flag = getattr(args, field.name, None)
        if flag is not None:
            changes[field.name] = flag
    if not changes:
        return config
    return validate(attrs.evolve(config, service=attrs.evolve(config.service, **changes)))


def run_serving(http: str, fn: Callable[..., Any], *args: Any) -> int:
    """``trio.run(fn, *args)`` for a program that serves the HTTP API on ``http``:
    when it cannot bind, one line and exit 2 instead of an exception-group traceback."""
    try:
        trio.run(fn, *args)
    except BaseExceptionGroup as group:
        exc = listen_error(group)
        if exc is None:
            raise
        print(f"error: cannot listen on {http}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def listen_error(group: BaseExceptionGroup) -> OSError | None:
    """The OSError inside Trio's exception groups when the HTTP API cannot bind
    (port in use, a host that does not resolve, an address this machine lacks)."""
    matched, _ = group.split(OSError)
    while isinstance(matched, BaseExceptionGroup):
        matched = matched.exceptions[0]
    return matched


def _version() -> str:
    try:
        return importlib.metadata.version("trio-books")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def is_loopback(host: str) -> bool:
    """``localhost`` and every loopback address (all of 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trio-books", description="Live, exact L2 order books from crypto exchanges.")
    p.add_argument("--version", action="version", version=f"trio-books {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service")
    run.add_argument("--config", default=os.environ.get(ENV_PREFIX + "CONFIG", "config.toml"), help="config file (default: config.toml, or $TRIO_BOOKS_CONFIG)")
    run.add_argument("--http", default=None, help="HTTP API bind address host:port (overrides service.http)")
    run.add_argument("--log-level", dest="log_level", default=None, help="log level (overrides service.log_level)")
    run.add_argument("--channel-capacity", dest="channel_capacity", type=int, default=None, help="per-venue update channel capacity")
    run.add_argument("--shard", default=None, help='run only shard K of N ("K/N") of the configured (venue, symbol) pairs')
    rec = sub.add_parser("record", help="run the service and record every raw frame and REST snapshot")
    rec.add_argument("--config", default=os.environ.get(ENV_PREFIX + "CONFIG", "config.toml"))
    rec.add_argument("--out", required=True, help="directory for the recording (rotated .jsonl.gz files)")
    rec.add_argument("--max-mb", dest="max_mb", type=float, default=256.0, help="rotate files at this many MB (uncompressed)")
    rec.add_argument("--http", default=None)
    rec.add_argument("--log-level", dest="log_level", default=None)
    rec.add_argument("--shard", default=None)
    cap = sub.add_parser("capture", help="run the service and capture every book to Parquet (see trio-books history)")
    cap.add_argument("--config", default=os.environ.get(ENV_PREFIX + "CONFIG", "config.toml"))
    cap.add_argument("--out", required=True, help="the capture directory (partitioned venue=/date=/hour=)")
    cap.add_argument("--http", default=None)
    cap.add_argument("--log-level", dest="log_level", default=None)
    cap.add_argument("--shard", default=None)
    from .history_cli import add_parser as add_history

    add_history(sub)
    rep = sub.add_parser("replay", help="rebuild books offline from a recording and print integrity results")
    rep.add_argument("files", nargs="+")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path")
    health = sub.add_parser("health", help="exit 0 if the running service reports healthy (for container health checks)")
    health.add_argument("--http", default=None, help="service address host:port (default: $TRIO_BOOKS_HTTP or 127.0.0.1:8080)")
    health.add_argument("--timeout", type=float, default=3.0)
    top = sub.add_parser("top", help="the service's venues and books, and one book's ladder, live in the terminal")
    top.add_argument("--http", default=None, help="service address host:port (default: $TRIO_BOOKS_HTTP or 127.0.0.1:8080)")
    top.add_argument("--book", default=None, help="venue/symbol whose ladder to show (default: the first book)")
    top.add_argument("--token", default=None, help="the service's auth token (default: $TRIO_BOOKS_AUTH_TOKEN)")
    top.add_argument("--rows", type=int, default=10, help="ladder levels per side (default 10)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between table refreshes (default 1)")
    demo = sub.add_parser("demo", help="run the service against the shipped fake venues on localhost (no exchange access needed)")
    demo.add_argument("--http", default=None, help="HTTP API bind address host:port (default 127.0.0.1:8080, or $TRIO_BOOKS_HTTP)")
    demo.add_argument("--log-level", dest="log_level", default=None)
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long (default: run until Ctrl-C)")
    demo.add_argument("--capture", default=None, metavar="DIR", help="also capture every book to Parquet in DIR (trio-books history)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        try:
            config = load_config(args.path)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        enabled = config.enabled_venues()
        print(f"{args.path}: ok ({len(enabled)} venues, {sum(len(v.symbols) for _, v in enabled)} books)")
        return 0
    if args.command == "health":
        return _health(args)
    if args.command == "top":
        return _top(args)
    if args.command == "replay":
        from .record import format_results, read_records, replay

        damage: list[str] = []
        try:
            results = replay(read_records(args.files, damage))
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot replay: {exc}", file=sys.stderr)
            return 2
        print(format_results(results))
        for note in damage:
            print(f"damaged: {note}")
        if not results:
            print("error: the recording holds no connection: nothing to replay", file=sys.stderr)
            return 1
        return 1 if damage or any(r.failures for r in results.values()) else 0
    if args.command == "history":
        from .history_cli import run as run_history

        return run_history(args)
    if args.command == "demo":
        from .demo import run_demo

        try:
            return run_demo(args, apply_overrides)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    def load() -> Config:
        config = apply_overrides(load_config(args.config), args)
        return capturing(config, args.out) if args.command == "capture" else config

    try:
        config = load()
        if config.sinks.parquet is not None and config.sinks.parquet.enabled:
            from .sinkconfig import capture_dir_problem

            problem = capture_dir_problem(config.sinks.parquet.path)
            if problem:
                raise ConfigError(problem)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.service.log_level)
    recorder = None
    if args.command == "record":
        from .record import Recorder

        recorder = Recorder(args.out, max_bytes=int(args.max_mb * 2**20))
    if config.service.gc_threshold:
        from . import runner  # noqa: F401  (imported now, so start-up's objects are frozen too)
        from .gcpolicy import tune_gc
        from .serve import app  # noqa: F401

        tune_gc(config.service.gc_threshold)
    try:
        return run_serving(config.service.http, _run_service, config, recorder, load)
    except KeyboardInterrupt:
        return 0
    finally:
        if recorder is not None:
            recorder.close()
            print(f"recorded to {', '.join(recorder.files) or 'nothing'}", file=sys.stderr)
    return 0


def capturing(config: Config, out: str) -> Config:
    """``config`` with its ``[sinks.parquet]`` (or the defaults) capturing to ``out``."""
    from .config import ParquetSinkConfig
    from .sinkconfig import check_parquet

    parquet = attrs.evolve(config.sinks.parquet or ParquetSinkConfig(), path=out, enabled=True)
    check_parquet(parquet)
    return attrs.evolve(config, sinks=attrs.evolve(config.sinks, parquet=parquet))


def _reloaded(config: Config, reload: Callable[[], Config] | None, runner: Any, log: Any) -> Config:
    """SIGHUP: the new configuration if it loads, else the running one (one line said)."""
    if reload is None:
        log.info("SIGHUP ignored: this service has no configuration file")
        return config
    try:
        new = reload()
    except ConfigError as exc:
        log.error("configuration not reloaded, the running one stays: {}", exc)
        return config
    if new.service != config.service or new.sinks != config.sinks:
        log.warning("[service] and [sinks] changes take effect at the next start; venues are reloaded now")
        new = attrs.evolve(new, service=config.service, sinks=config.sinks)
    touched = runner.apply(new)
    log.info("configuration reloaded: {}", ", ".join(touched) + " restarted" if touched else "no venue changed")
    return new


def _service_url(address: str | None) -> str:
    """``http://host:port`` of a running service (``--http``, else $TRIO_BOOKS_HTTP, else 127.0.0.1:8080)."""
    host, port = parse_address(address or os.environ.get(ENV_PREFIX + "HTTP", "127.0.0.1:8080"), "--http")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _top(args: argparse.Namespace) -> int:
    from .top import run_top

    if not 0.1 <= args.interval <= 60:
        print("error: --interval must be from 0.1 to 60 seconds", file=sys.stderr)
        return 2
    if not 1 <= args.rows <= 50:
        print("error: --rows must be from 1 to 50", file=sys.stderr)
        return 2
    try:
        return run_top(args, _service_url(args.http))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _health(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    address = args.http or os.environ.get(ENV_PREFIX + "HTTP", "127.0.0.1:8080")
    try:
        host, port = parse_address(address, "--http")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: HTTP {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(body.get("status", "?"))
    return 0


async def _run_service(config: Config, recorder=None, reload: Callable[[], Config] | None = None, *,
                       task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """The service until SIGINT/SIGTERM. SIGHUP re-reads the configuration with
    ``reload()`` (the daemon convention): venues added, removed or changed are
    started, stopped or restarted, the rest go on; a bad file is refused with
    its one-line error and the running configuration stays. SIGUSR1 is logged
    and ignored (it used to end the process without a word)."""
    from .runner import VenueRunner, build_store
    from .serve.app import build_app, http_server

    store = build_store(config)
    host, port = parse_address(config.service.http)
    log = named("service")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            server = http_server(build_app(store, service=config.service), config.service)
            binds = await nursery.start(server.serve, host, port)  # an OSError: see listen_error
            if not is_loopback(host) and not config.service.auth_token:
                log.warning("HTTP API bound to {} (not loopback) without service.auth_token: open to other hosts", host)
            if recorder is not None:
                await nursery.start(recorder.run)  # writes in a worker thread, never from the read loop
            runner = await nursery.start(VenueRunner(store, recorder).run, config)
            venues = ", ".join(f"{v} ({len(c.symbols)})" for v, c in config.enabled_venues()) or "none"
            log.info("trio-books started: http {}; venues {}", " ".join(binds), venues)
            task_status.started(binds)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    log.info("SIGUSR1 ignored (SIGHUP re-reads the configuration; SIGTERM stops)")
                    continue
                if signum == signal.SIGHUP:
                    config = _reloaded(config, reload, runner, log)
                    continue
                log.info("trio-books stopping ({})", signal.Signals(signum).name)
                # HTTP first, bounded: requests in flight finish, /ws clients get 1001, then the rest stops
                await server.shutdown(config.service.shutdown_grace)
                nursery.cancel_scope.cancel()
                break
    log.info("trio-books stopped")
