"""The Dockerfile cannot be built here (no Docker engine), so this test performs
its exact steps in a fresh virtualenv: ``pip install .``, then the entrypoint
``trio-books run`` with the image's environment, then the HEALTHCHECK command,
then the stop signal."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from trio_books.testing.harness import free_port

ROOT = pathlib.Path(__file__).parent.parent.parent
pytestmark = pytest.mark.e2e


def dockerfile():
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_is_what_this_test_performs():
    text = dockerfile()
    assert 'pip install --no-cache-dir .' in text
    assert 'ENTRYPOINT ["trio-books", "run"]' in text
    assert re.search(r'HEALTHCHECK .*CMD \["trio-books", "health"', text)
    assert "USER 10001" in text and "useradd" in text
    assert "curl" not in text and "wget" not in text
    assert "TRIO_BOOKS_CONFIG=/etc/trio-books/config.toml" in text


async def test_fresh_venv_install_run_healthcheck_and_stop(tmp_path, nursery):
    import trio

    from trio_books.testing import FakeBinanceSpot

    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=20).serve)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    res = await trio.to_thread.run_sync(lambda: subprocess.run(
        [str(pip), "install", "-q", "--no-cache-dir", str(ROOT)], capture_output=True, text=True, timeout=600))
    assert res.returncode == 0, res.stderr[-2000:]
    config = tmp_path / "config.toml"
    config.write_text(fake.config_toml())
    port = free_port()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
           "TRIO_BOOKS_CONFIG": str(config), "TRIO_BOOKS_HTTP": f"127.0.0.1:{port}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(["trio-books", "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = shlex.split("trio-books health --http 127.0.0.1:%d" % port)
        ok = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = await trio.to_thread.run_sync(lambda: subprocess.run(health, env=env, capture_output=True, text=True))
            if r.returncode == 0:
                ok = True
                break
            await trio.sleep(0.3)
        assert ok, "health check never passed"
        proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(lambda: proc.wait(timeout=5))
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read().decode()
    assert "Traceback" not in out and "trio-books stopped" in out
