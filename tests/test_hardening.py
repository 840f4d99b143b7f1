"""Edges found by probing the service (issue "Hardening"), each with a test that
failed before: Unicode digits in ``depth``, JSON for a wrong method, every
loopback address counted as loopback, ``--version``, and a bug inside a
connection attempt logged at ERROR with its traceback."""

from __future__ import annotations

import re

import attrs
import httpx
import pytest
import trio
from loguru import logger

from trio_books import load_config_text
from trio_books.cli import is_loopback, main
from trio_books.runner import build_store
from trio_books.serve.app import build_app, depth_param
from trio_books.supervise import supervise_venue
from trio_books.venues import get_venue


@pytest.mark.parametrize(("raw", "want"), [("5", 5), ("5000", 5000), ("²", None), ("٣", None), ("0", None), ("5001", None), ("-1", None), ("", None)])
def test_depth_accepts_ascii_digits_only(raw, want):
    assert depth_param(raw) == want


async def test_unicode_digits_and_wrong_methods_get_json_errors():
    store = build_store(load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n'))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_app(store)), base_url="http://t") as http:
        resp = await http.get("/books/binance_spot/BTCUSDT?depth=²")
        assert resp.status_code == 400 and resp.json()["error"].startswith("depth must be")
        resp = await http.get("/consolidated/BTC-USD?depth=²")
        assert resp.status_code == 400
        resp = await http.post("/health")
        assert resp.status_code == 405 and resp.json() == {"error": "method POST not allowed here"}


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("127.255.0.9", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False), ("example.org", False)])
def test_every_loopback_address_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("trio-books ")


async def test_a_bug_inside_an_attempt_is_logged_at_error_with_its_traceback(autojump_clock):
    base = get_venue("binance_spot")

    def broken(spec):
        raise ZeroDivisionError("a bug in the venue module")

    cfg = load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\nws_url = "ws://127.0.0.1:9"\n')
    store = build_store(cfg)
    lines: list = []
    sink = logger.add(lines.append, level="DEBUG", format="{level} {message}{exception}")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise_venue, attrs.evolve(base, connect=broken), cfg.venues["binance_spot"], cfg.service, store)
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    errors = [str(line) for line in lines if str(line).startswith("ERROR")]
    assert errors and "ZeroDivisionError: a bug in the venue module" in errors[0] and "Traceback" in errors[0]
    assert len(errors) == 1  # once per distinct failure (repeats are summarised later)


def test_ws_diffs_key_levels_by_exact_value():
    """``Decimal.normalize()`` rounds to 28 digits: two long prices were one key,
    and the removal of one of them was lost."""
    from trio_books.serve.stream import _norm, diff_levels

    a, b = "1.00000000000000000000000000001", "1.00000000000000000000000000002"
    old = {_norm(a): (a, "1"), _norm(b): (b, "2")}
    assert diff_levels(old, [(b, "2")]) == [[a, "0"]]
    assert _norm("0.10") == _norm("0.1")  # two spellings of one price are still one level


def test_the_log_rate_limiter_forgets_quiet_keys():
    from trio_books.log import RateLimiter

    now = [0.0]
    limiter = RateLimiter(window=60.0, clock=lambda: now[0])
    for i in range(1000):
        assert limiter.check(("gap", f"message {i}")) == 0
    now[0] = 61.0
    assert limiter.check("one more") == 0
    assert len(limiter._last) == 1  # the thousand quiet keys are gone


def test_a_venue_module_that_cannot_import_is_an_error_not_a_missing_venue(monkeypatch):
    import importlib

    from trio_books import venues

    real = importlib.import_module

    def broken(name, *args):
        if name == "trio_books.venues.okx":
            raise ModuleNotFoundError("No module named 'a_dependency'", name="a_dependency")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="a_dependency"):
        venues.available()


def test_the_library_is_silent_until_the_application_enables_it():
    """The example embeds the library and enables no logging: nothing of ours on stderr
    (before, loguru's default DEBUG sink printed every line)."""
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "watch_book.py"
    res = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "trio_books" not in res.stderr and " live (" not in res.stderr, res.stderr[-500:]


@pytest.mark.parametrize(("venue", "symbol"), [("kraken_spot", "BTCUSD"), ("kraken_spot", "btc/usd"), ("binance_spot", "BTC/USDT"),
                                               ("binance_futures", "BTC-USDT"), ("okx_spot", "BTCUSDT"), ("coinbase_spot", "BTC/USD"),
                                               ("bingx_spot", "BTCUSDT"), ("bybit_spot", "BTC/USDT")])
def test_a_symbol_in_another_venues_notation_is_a_one_line_error(venue, symbol):
    from trio_books.config import ConfigError

    with pytest.raises(ConfigError, match=rf"^venues\.{venue}\.symbols: \"{re.escape(symbol)}\" is not in {venue}'s notation \(.+e\.g\. "):
        load_config_text(f'[venues.{venue}]\nsymbols = ["{symbol}"]\n')


def test_an_empty_config_file_says_so(tmp_path):
    from trio_books.config import ConfigError, load_config

    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="no venues configured"):
        load_config(str(path))


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[service]\nhttp = "127.0.0.1:{port}"\n[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n'
                       'ws_url = "ws://127.0.0.1:9"\nrest_url = "http://127.0.0.1:9"\n')
        for cmd in (["run", "--config", str(cfg)], ["demo", "--http", f"127.0.0.1:{port}", "--seconds", "1"]):
            res = subprocess.run([sys.executable, "-m", "trio_books", *cmd], capture_output=True, text=True, timeout=60)
            assert res.returncode == 2, res.stderr[-400:]
            assert res.stderr.strip().splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
            assert "Traceback" not in res.stderr


async def test_a_bug_behind_a_route_is_a_json_500_logged_once_with_its_traceback(monkeypatch):
    store = build_store(load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n'))
    monkeypatch.setattr(type(store), "entry", lambda self, venue, symbol: 1 / 0)
    lines: list = []
    sink = logger.add(lines.append, level="ERROR", format="{message}{exception}")
    try:
        app = build_app(store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False), base_url="http://t") as http:
            for _ in range(3):
                resp = await http.get("/books/binance_spot/BTCUSDT")
                assert resp.status_code == 500 and resp.json() == {"error": "internal error (logged)"}
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "GET /books/binance_spot/BTCUSDT failed: ZeroDivisionError" in str(lines[0])
    assert "Traceback" in str(lines[0])


def test_the_token_and_access_settings_come_from_the_environment_too():
    import argparse

    from trio_books.cli import apply_overrides
    from trio_books.config import ConfigError

    cfg = load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n')
    env = {"TRIO_BOOKS_AUTH_TOKEN": "s3cret", "TRIO_BOOKS_METRICS_AUTH": "false", "TRIO_BOOKS_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    svc = apply_overrides(cfg, argparse.Namespace(), env).service
    assert (svc.auth_token, svc.metrics_auth, svc.allowed_origins) == ("s3cret", False, ("https://a.example", "https://b.example"))
    with pytest.raises(ConfigError, match="TRIO_BOOKS_METRICS_AUTH: expected true or false"):
        apply_overrides(cfg, argparse.Namespace(), {"TRIO_BOOKS_METRICS_AUTH": "maybe"})
