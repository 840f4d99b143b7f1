from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from trio_books import ConfigError, load_config, load_config_text

ROOT = pathlib.Path(__file__).parent.parent


def test_shipped_config_is_valid_and_enables_every_venue():
    cfg = load_config(str(ROOT / "config.toml"))
    from trio_books.venues import VENUE_IDS

    enabled = dict(cfg.enabled_venues())
    assert set(enabled) == set(VENUE_IDS)
    assert all(len(v.symbols) == 2 for v in enabled.values())
    assert cfg.service.http.startswith("127.0.0.1:")


def test_defaults_and_overrides():
    cfg = load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\nws_url = "ws://127.0.0.1:9"\nrest_url = "http://127.0.0.1:9"\n')
    assert cfg.service.channel_capacity == 5000
    v = cfg.venues["binance_spot"]
    assert v.symbols == ("BTCUSDT",) and v.enabled and v.ws_url == "ws://127.0.0.1:9"
    off = load_config_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\nenabled = false\n')
    assert off.enabled_venues() == []


BAD = [
    ('[venues.binance_spot]\nsymbols=["A"]\ndepth="x"\n', 'venues.binance_spot.depth: expected int, got "x"'),
    ('[venues.binance_spot]\nsymbols=["A"]\ndepth=0\n', "venues.binance_spot.depth: must be between 1 and 5000, got 0"),
    ('[venues.binance_spot]\nsymbols=["A"]\nfoo=1\n', "venues.binance_spot.foo: unknown key"),
    ('[venues.nope]\nsymbols=["A"]\n', "venues.nope: unknown venue id"),
    ('[venues.binance_spot]\nsymbols=[]\n', "venues.binance_spot.symbols: must list at least one symbol"),
    ('[venues.binance_spot]\ndepth=5\n', "venues.binance_spot.symbols: required"),
    ('[venues.binance_spot]\nsymbols=["A"]\nws_url="http://x"\n', "venues.binance_spot.ws_url: expected a ws:// or wss:// URL"),
    ('[venues.binance_spot]\nsymbols=["A"]\nrest_url="ftp://x"\n', "venues.binance_spot.rest_url: expected a http:// or https:// URL"),
    ('[venues.binance_spot]\nsymbols=["A"]\nws_url="ws://"\n', "venues.binance_spot.ws_url: expected a ws:// or wss:// URL with a host"),
    ('[service]\nchannel_capacity="5"\n', 'service.channel_capacity: expected int, got "5"'),
    ('[service]\ngc_threshold=5\n', "service.gc_threshold: must be 0 (Python's settings) or between 700 and 10000000, got 5"),
    ('[service]\nhttp="nohost"\n', 'service.http: expected host:port, got "nohost"'),
    ('[service]\nlog_level="LOUD"\n', "service.log_level: expected one of"),
    ('[service]\nfoo=1\n', "service.foo: unknown key"),
    ('[venues.binance_spot]\nsymbols=["A"]\nenabled="no"\n', 'venues.binance_spot.enabled: expected bool, got "no"'),
    ('[venues.binance_spot]\nsymbols=["A"]\nwatchdog=-1\n', "venues.binance_spot.watchdog: must be a number of seconds above 0"),
    ('[venues.binance_spot]\nsymbols=["A"]\noptions={x=1}\n', "venues.binance_spot.options.x: unknown option"),
    ("service = 1\n", "service: expected a table, got 1"),
    ("x = \n", "not valid TOML"),
    ("extra = 1\n", "extra: unknown key"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_config_is_one_line_naming_the_key(text, message):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trio_books", *args], capture_output=True, text=True, timeout=60)


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[venues.binance_spot]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n')
    ok = run_cli("check-config", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\ndepth = "x"\n')
    for cmd in (["check-config", str(bad)], ["run", "--config", str(bad)]):
        res = run_cli(*cmd)
        assert res.returncode == 2
        assert res.stderr.strip() == 'error: venues.binance_spot.depth: expected int, got "x"'
        assert "Traceback" not in res.stderr
    missing = run_cli("check-config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_environment_and_flags_override_service(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n')
    bad_env = subprocess.run([sys.executable, "-m", "trio_books", "run", "--config", str(good)],
                             capture_output=True, text=True, timeout=60,
                             env={**__import__("os").environ, "TRIO_BOOKS_HTTP": "nohost"})
    assert bad_env.returncode == 2 and "service.http: expected host:port" in bad_env.stderr


def test_flags_beat_environment_beats_file():
    import argparse

    from trio_books.cli import apply_overrides

    cfg = load_config_text('[service]\nhttp = "127.0.0.1:1"\nlog_level = "INFO"\n')
    args = argparse.Namespace(http="127.0.0.1:3", log_level=None, channel_capacity=None, shard=None)
    env = {"TRIO_BOOKS_HTTP": "127.0.0.1:2", "TRIO_BOOKS_LOG_LEVEL": "DEBUG", "TRIO_BOOKS_CHANNEL_CAPACITY": "7"}
    out = apply_overrides(cfg, args, env)
    assert (out.service.http, out.service.log_level, out.service.channel_capacity) == ("127.0.0.1:3", "DEBUG", 7)
    with pytest.raises(ConfigError, match="TRIO_BOOKS_CHANNEL_CAPACITY: expected int"):
        apply_overrides(cfg, argparse.Namespace(), {"TRIO_BOOKS_CHANNEL_CAPACITY": "many"})
    with pytest.raises(ConfigError, match="service.shard"):
        apply_overrides(cfg, argparse.Namespace(), {"TRIO_BOOKS_SHARD": "3/2"})
