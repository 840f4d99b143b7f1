"""Storm protection: many symbols resyncing at once stay within the venue's REST budget."""

from __future__ import annotations

import trio

from trio_books import load_config_text, open_books
from trio_books.testing import FakeBinanceSpot
from trio_books.venues.binance import spot_weight


def max_weight_per_minute(times: list[float], weight: int) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 60.0:
            j += 1
        best = max(best, (i - j + 1) * weight)
    return best


async def test_fifty_symbols_and_a_forced_disconnect_stay_within_request_weight(nursery, pacer, autojump_clock):
    symbols = [f"S{i:02d}USDT" for i in range(50)]
    fake = await nursery.start(FakeBinanceSpot(symbols, rate=2, levels=20).serve)
    # depth 5000 costs weight 250 per snapshot: Binance allows 6000 per minute, i.e. 24 snapshots
    cfg = load_config_text(fake.config_toml(depth=5000))
    async with open_books(cfg) as books:
        with trio.fail_after(400):
            await books.wait_live("binance_spot")
        first_sync = trio.current_time()
        await fake.drop()  # every symbol must resync at once
        with trio.fail_after(400):
            while books.statistics()["binance_spot"].reconnects == 0:
                await trio.sleep(0.1)
            await books.wait_live("binance_spot")
        stats = books.statistics()["binance_spot"]
    times = [t for t, path in fake.rest_log if path.startswith("/api/v3/depth")]
    assert len(times) == 100  # each symbol twice, no retries, no storm
    assert max_weight_per_minute(times, spot_weight(5000)) <= 6000
    assert first_sync >= 60  # 50 × 250 weight cannot be had in less than about a minute
    assert stats.failures == {"close": 1}  # pacing never turned into sync timeouts
