"""The service's GC policy (``trio_books.gcpolicy``). It changes process-wide
state, so every check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trio_books import tune_gc


def _python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tune_gc_freezes_start_up_and_raises_only_the_young_threshold():
    got = _python(
        "import gc, json\n"
        "import trio_books\n"
        "before = gc.get_threshold()\n"
        "trio_books.tune_gc(12345)\n"
        "print(json.dumps({'before': before, 'after': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))\n"
    )
    assert got["after"] == [12345, got["before"][1], got["before"][2]]
    assert got["frozen"] > 10_000  # every module, class and function start-up made


def test_tune_gc_refuses_a_threshold_that_is_not_positive():
    with pytest.raises(ValueError):
        tune_gc(0)


SERVICE_START = (
    "import gc, json, sys, trio\n"
    "from trio_books import cli\n"
    "default = gc.get_threshold()[0]\n"
    "def fake_run(*args, **kwargs):\n"  # stands in for the service: report the GC state it would run with
    "    print(json.dumps({'threshold': gc.get_threshold()[0], 'default': default, 'frozen': gc.get_freeze_count()}))\n"
    "trio.run = fake_run\n"
    "cli.main(['run', '--config', sys.argv[1]])\n"
)


@pytest.mark.parametrize(
    "setting,env,threshold,frozen",
    [
        ("", None, 10_000, True),
        ("gc_threshold = 0", None, None, False),
        ("gc_threshold = 2000", None, 2000, True),
        ("gc_threshold = 2000", "3000", 3000, True),  # TRIO_BOOKS_GC_THRESHOLD wins over the file
    ],
)
def test_the_service_applies_service_gc_threshold_at_start(tmp_path, setting, env, threshold, frozen):
    path = tmp_path / "c.toml"
    path.write_text(f'[service]\nlog_level = "ERROR"\n{setting}\n\n[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n')
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_BOOKS_")}
    if env is not None:
        environ["TRIO_BOOKS_GC_THRESHOLD"] = env
    out = subprocess.run([sys.executable, "-c", SERVICE_START, str(path)], capture_output=True, text=True, timeout=60, env=environ)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["threshold"] == (got["default"] if threshold is None else threshold)  # None: Python's own, untouched
    assert (got["frozen"] > 10_000) is frozen
