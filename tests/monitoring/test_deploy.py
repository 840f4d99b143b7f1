"""deploy/: the Grafana dashboard and the alert rules use only metrics the service
exports; promtool checks and unit-tests the rules; the compose profile is wired."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from trio_books import load_config_text
from trio_books.book import OrderBook
from trio_books.model import BookState
from trio_books.runner import build_store
from trio_books.serve.app import build_app
from trio_books.sinks.redis import RedisSinkStats

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "trio-books.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


FIGURE_BOOK = ("binance_spot", "BTCUSDT")


async def scrape() -> tuple[set[str], set[str]]:
    """``(names, labels)``: every sample name a scrape of ``/metrics`` can hold
    (families with no sample yet count by their declared type) and every label
    name its samples carry. The config lists a live book in ``metrics_books`` (its
    figures are exported only while it is live), another book is stale with an
    error, and a Redis sink is configured, so that every family has samples."""
    cfg = load_config_text('[service]\nmetrics_books = ["binance_spot:BTCUSDT"]\n'
                           '[venues.binance_spot]\nsymbols = ["BTCUSDT"]\n[venues.okx_spot]\nsymbols = ["BTC-USDT"]\n')
    store = build_store(cfg)
    store.publish(*FIGURE_BOOK, OrderBook())
    store.set_state(FIGURE_BOOK[0], [FIGURE_BOOK[1]], BookState.LIVE)
    entry = store.entry(*FIGURE_BOOK)
    assert entry.book is not None
    entry.book.apply_snapshot([("100.0", "1.5"), ("99.95", "2")], [("100.05", "1"), ("101", "3")])
    store.touched(entry, 1, None)
    store.set_state("okx_spot", ["BTC-USDT"], BookState.STALE, error="gap: seq 7 after 5")
    store.sinks["redis"] = RedisSinkStats(url="redis://127.0.0.1:1/0", shard="", publisher="p", queue_capacity=8)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(store, service=cfg.service)), base_url="http://t") as http:
        text = (await http.get("/metrics")).text
    names, sampled, labels = set(), set(), {"job", "instance"}  # (the two Prometheus adds to every series)
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        for sample in family.samples:
            sampled.add(sample.name)
            labels.update(sample.labels)
    assert {"trio_books_book_spread_bps", "trio_books_book_depth_base", "trio_books_book_error_info"} <= sampled
    return names | sampled, labels


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside quotes,
    label matchers and ``by``/``on`` lists that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if m.group() in {"by", "without", "on", "ignoring", "bool", "and", "or", "unless", "offset", "inf", "nan"}:
            continue
        names.add(m.group())
    return names


def label_names(expr: str) -> set[str]:
    """The label names a PromQL expression matches on or groups by."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = {m.group(1) for braces in re.findall(r"\{([^}]*)\}", expr) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", braces)}
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        names.update(n.strip() for n in group.split(",") if n.strip())
    return names


def test_metric_names_parser():
    expr = 'histogram_quantile(0.99, sum by (venue, le) (rate(a_bucket{job=~"$job", x="y(z)"}[$__rate_interval]))) > 1 and on (venue) b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names('max by (i, s) (u{j="x"} * on (i) group_left (s) v{j="x"})') == {"u", "v"}
    assert label_names(expr) == {"job", "x", "venue", "le"}
    assert label_names('max by (i, s) (u{j="x", k!~"a=b"} * on (i) group_left (s) v)') == {"i", "s", "j", "k"}


def dashboard_exprs(dash: dict) -> list[tuple[str, str, set[str]]]:
    """``(where, expression, the label names it shows)``: a legend's ``{{label}}``s,
    a variable's ``label_values(expression, label)``."""
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"], set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            expr, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"]).groups()
            out.append((var["name"], expr, {label}))
    return out


async def test_dashboard_uses_only_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
    exported, labels = await scrape()
    used = {}
    for where, expr, shown in dashboard_exprs(dash):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            used.setdefault(name, where)
        unknown_labels = (label_names(expr) | shown) - labels
        assert not unknown_labels, f"{where}: labels no exported series has: {unknown_labels}"
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert not unknown, f"dashboard panels use metrics the service does not export: {unknown}"
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    for must in ("trio_books_book_state", "trio_books_attempt_failures", "trio_books_book_resyncs", "trio_books_reconnects",
                 "trio_books_book_age_seconds", "trio_books_channel_occupancy", "trio_books_channel_high_water",
                 "trio_books_apply_latency_seconds", "trio_books_frames", "trio_books_received_bytes", "trio_books_rest_errors",
                 "trio_books_http_requests", "trio_books_stream_clients", "trio_books_redis_connected",
                 "trio_books_book_spread_bps", "trio_books_book_mid", "trio_books_book_imbalance", "trio_books_book_depth_base",
                 "trio_books_book_depth_quote"):
        assert must in families, f"no panel shows {must}"


async def test_alert_rules_use_only_exported_metrics():
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    exported, labels = await scrape()
    for rule in rules:
        unknown = metric_names(rule["expr"]) - exported - {"up"}
        assert not unknown, f"{rule['alert']}: unknown metrics {unknown}"
        assert label_names(rule["expr"]) <= labels, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
    tests = yaml.safe_load((DEPLOY / "prometheus" / "tests" / "alerts_test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    assert tested == {r["alert"] for r in rules}, "every alert has a promtool unit test"


def test_promtool_checks_and_tests_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not available (Debian package 'prometheus'; .ci/run installs it)")
    for args, cwd in (([promtool, "check", "rules", str(ALERTS)], ROOT),
                      ([promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml")], ROOT),
                      ([promtool, "test", "rules", "alerts_test.yml"], DEPLOY / "prometheus" / "tests")):
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(args[1:])}:\n{done.stdout}\n{done.stderr}"


def test_compose_monitoring_profile_is_wired():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert "profiles" not in services["trio-books"], "the service itself runs without a profile"
    for name in ("prometheus", "grafana"):
        svc = services[name]
        assert svc["profiles"] == ["monitoring"]
        for port in svc["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes on loopback only"
        for volume in svc["volumes"]:
            host = volume.split(":")[0]
            assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    job = prom["scrape_configs"][0]
    assert job["job_name"] == "trio-books" and job["static_configs"][0]["targets"] == ["trio-books:8080"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "trio-books.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in services["grafana"]["volumes"]
    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
