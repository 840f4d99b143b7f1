"""``trio-books demo`` starts the fakes and the service; its books are served over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from trio_books.testing.harness import free_port

pytestmark = pytest.mark.e2e


def test_demo_serves_live_books_and_honours_the_http_variable():
    port = free_port()
    env = {**os.environ, "TRIO_BOOKS_HTTP": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "trio_books", "demo", "--seconds", "30"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 25
        body = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/books/binance_spot/BTCUSDT?depth=3", timeout=2)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert body is not None, "the demo never served a live book"
        assert len(body["bids"]) == 3 and all(isinstance(p, str) for p, _ in body["bids"])
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        assert "binance_spot" in health["venues"]
        assert "trio_books_frames_total" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert "demo running" in out and "Traceback" not in out
