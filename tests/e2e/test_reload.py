"""SIGHUP re-reads the configuration (the daemon convention): a venue added
starts, a changed one restarts, an unchanged one goes on untouched; a bad file
is refused with its one-line error while the running configuration stays.
SIGUSR1 is logged and ignored; SIGTERM still stops the service with exit 0."""

from __future__ import annotations

import signal

import pytest
import trio

from trio_books.testing import FakeBinanceSpot, FakeBybitSpot
from trio_books.testing.harness import ServiceProcess

pytestmark = pytest.mark.e2e


async def wait_for(svc: ServiceProcess, predicate, timeout: float = 20.0) -> dict:
    with trio.fail_after(timeout):
        while True:
            venues = (await svc.get("/venues")).json()["venues"]
            if predicate(venues):
                return venues
            await trio.sleep(0.1)


async def test_sighup_reloads_venues_and_refuses_a_bad_file(nursery):
    binance = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=20).serve)
    bybit = await nursery.start(FakeBybitSpot(["BTCUSDT"], rate=20).serve)
    first = binance.config_toml(depth=100)
    svc = await ServiceProcess(first).start(nursery)
    try:
        await wait_for(svc, lambda v: v["binance_spot"]["state"] == "live")
        attempts = (await svc.get("/health")).json()["venues"]["binance_spot"]["reconnects"]

        with open(svc.config_path, "w") as fh:  # a venue added, the other unchanged
            fh.write(first + bybit.config_toml(depth=50))
        svc.proc.send_signal(signal.SIGHUP)
        venues = await wait_for(svc, lambda v: "bybit_spot" in v and v["bybit_spot"]["state"] == "live")
        assert venues["binance_spot"]["state"] == "live"
        health = (await svc.get("/health")).json()["venues"]
        assert health["binance_spot"]["reconnects"] == attempts  # untouched

        with open(svc.config_path, "w") as fh:  # a bad file: refused, the running configuration stays
            fh.write(first + '[venues.kraken_spot]\nsymbols = ["BTCUSD"]\n')
        svc.proc.send_signal(signal.SIGHUP)
        svc.proc.send_signal(signal.SIGUSR1)
        with trio.fail_after(10):
            while "SIGUSR1 ignored" not in svc.log():
                await trio.sleep(0.1)
        assert "configuration not reloaded, the running one stays: venues.kraken_spot.symbols" in svc.log()
        venues = (await svc.get("/venues")).json()["venues"]
        assert set(venues) == {"binance_spot", "bybit_spot"} and venues["bybit_spot"]["state"] == "live"

        with open(svc.config_path, "w") as fh:  # a venue removed, a symbol dropped from the other
            fh.write(first.replace('"BTCUSDT", "ETHUSDT"', '"BTCUSDT"'))
        svc.proc.send_signal(signal.SIGHUP)
        venues = await wait_for(svc, lambda v: "bybit_spot" not in v and set(v["binance_spot"]["symbols"]) == {"BTCUSDT"}
                                and v["binance_spot"]["state"] == "live")
        assert "configuration reloaded: binance_spot, bybit_spot restarted" in svc.log()
    finally:
        code = await svc.stop()
    assert code == 0, svc.log()
