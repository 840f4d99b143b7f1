"""A real ``redis-server`` per test, on 127.0.0.1 and a free port, without persistence.

Tests that need it skip with ``redis-server not available: …`` only when it cannot be
started here (not installed, or it would not start); ``.ci/run`` installs Debian's package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import trio

from trio_books.testing.harness import free_port


class RedisServer:
    """One ``redis-server`` subprocess; :meth:`kill` and :meth:`start` again keep its port."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="trio-books-redis-")
        self.log_path = os.path.join(self.dir.name, "redis.log")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir.name, "--daemonize", "no", "--loglevel", "warning"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.starts += 1

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it answers PING (blocking: for fixtures)."""
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._pong():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {self.proc.poll()}): {self.log()[-500:]}")
            time.sleep(0.02)

    async def restart(self, timeout: float = 10.0) -> None:
        """Start again on the same port (inside a Trio test)."""
        assert self.proc is None or self.proc.poll() is not None, "still running"
        self._spawn()
        with trio.fail_after(timeout):
            while not await trio.to_thread.run_sync(self._pong):
                assert self.proc.poll() is None, f"redis-server exited: {self.log()[-500:]}"
                await trio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: an abrupt outage, every unsaved stream is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)

    def close(self) -> None:
        self.kill()
        self.dir.cleanup()


def _server_or_skip() -> RedisServer:
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("redis-server not available: the redis client library is not installed (pip install -e '.[test]')")
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not available: not on PATH (apt-get install redis-server; .ci/run installs it)")
    server = RedisServer(exe)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.close()
        pytest.skip(f"redis-server not available: it would not start: {exc}")
    return server


@pytest.fixture
def redis_server():
    server = _server_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def stopped_redis_server():
    """A server that was started once (so it can start here) and is stopped now."""
    server = _server_or_skip()
    server.kill()
    try:
        yield server
    finally:
        server.close()
