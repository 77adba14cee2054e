"""GET /stats after known traffic (per-route counts, status classes, percentiles, rates,
consumers, 5/60-minute busiest, upstream targets), and GET /dashboard rendered by a real
headless Chromium: the DOM must show the route names and counts /stats has, and a
screenshot is saved under the build dir."""
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest

from conftest import base_config, http_request
from harness.gateway import build_dir
from harness.timing import scaled

TOKEN = "dash-token-0123456789abcdef"
CHROMIUM = shutil.which("chromium")
KEYS = {"alice-key-9f2c41d0": "alice", "bob-key-77aa10e3": "bob"}


def route(name, paths, upstream, **kw):
    r = {"name": name, "paths": paths, "upstream": upstream}
    r.update(kw)
    return r


def stats(gw, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    r = http_request("GET", gw.admin_url + "/stats", headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    return r.json()


@pytest.fixture
def traffic(upstream, gateway):
    """A gateway with three routes and known traffic: users 7x200, orders 3x200 + 2x500
    (upstream answers 500), keyed 4 by alice and 1 by bob, plus 2 requests no route matches."""
    ok = upstream(name="ok")
    bad = upstream(name="bad", status=500)
    dead = "127.0.0.1:1"
    cfg = base_config(
        upstreams=[ok, bad, {"name": "dead", "targets": [{"address": dead}],
                             "circuit_breaker": {"failures": 1, "open_ms": 60000}}],
        routes=[route("users", ["/users"], "ok"),
                route("orders", ["/orders"], "ok"),
                route("orders-fail", ["/orders/fail"], "bad"),
                route("keyed", ["/keyed"], "ok", auth={"api_key": {}}),
                route("down", ["/down"], "dead")],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": name, "api_keys": [key]} for key, name in KEYS.items()])
    cfg["admin"]["token"] = TOKEN
    gw = gateway(cfg)
    for _ in range(7):
        assert http_request("GET", gw.url("/users/1")).status == 200
    for _ in range(3):
        assert http_request("GET", gw.url("/orders")).status == 200
    for _ in range(2):
        assert http_request("GET", gw.url("/orders/fail")).status == 500
    for key, n in (("alice-key-9f2c41d0", 4), ("bob-key-77aa10e3", 1)):
        for _ in range(n):
            assert http_request("GET", gw.url("/keyed"),
                                headers={"X-API-Key": key}).status == 200
    assert http_request("GET", gw.url("/keyed"), headers={"X-API-Key": "wrong"}).status == 401
    for _ in range(2):
        assert http_request("GET", gw.url("/nothing-here")).status == 404
    assert http_request("GET", gw.url("/down")).status in (502, 503)
    return gw


def by_name(items):
    return {item["name"]: item for item in items}


def test_stats_counts(traffic):
    s = stats(traffic, TOKEN)
    routes = by_name(s["routes"])
    assert [r["name"] for r in s["routes"][:5]] == ["users", "orders", "orders-fail", "keyed", "down"]
    assert routes["users"]["requests"] == 7 and routes["users"]["status"]["2xx"] == 7
    assert routes["users"]["errors"] == 0
    assert routes["orders"]["requests"] == 3
    assert routes["orders-fail"]["requests"] == 2 and routes["orders-fail"]["errors"] == 2
    assert routes["orders-fail"]["status"]["5xx"] == 2
    assert routes["keyed"]["requests"] == 6 and routes["keyed"]["status"]["4xx"] == 1
    assert routes[""]["requests"] == 2 and routes[""]["status"]["4xx"] == 2
    for r in ("users", "orders", "keyed"):
        p50, p99 = routes[r]["p50_ms"], routes[r]["p99_ms"]
        assert 0 < p50 <= p99 < 10000, routes[r]
        assert routes[r]["requests_per_s"] > 0
    assert s["rate_window_ms"] >= 0
    assert s["top_consumers"] == [{"name": "alice", "requests": 4, "errors": 0},
                                  {"name": "bob", "requests": 1, "errors": 0}]
    for win in ("5m", "60m"):
        b = s["busiest"][win]
        assert b["window_s"] >= 0
        assert [(r["name"], r["requests"]) for r in b["routes"][:2]] == [("users", 7), ("keyed", 6)]
        assert b["consumers"][0] == {"name": "alice", "requests": 4, "errors": 0}
    ups = {u["name"]: u for u in s["upstreams"]}
    assert ups["ok"]["targets"][0]["up"] is True
    assert ups["dead"]["targets"][0]["breaker"] == "open"
    assert s["xdp"] is None and s["top_sources"] == []
    assert s["generation"] == 1 and s["uptime_s"] >= 0


def test_stats_rates_follow_traffic(traffic):
    """requests_per_s is a recent rate: it falls back to 0 once traffic stops."""
    deadline = time.monotonic() + scaled(15)
    while True:
        s = stats(traffic, TOKEN)
        if by_name(s["routes"])["users"]["requests_per_s"] == 0:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.5)
    assert by_name(s["routes"])["users"]["requests"] == 7


def test_consumer_metrics_exported(traffic):
    r = http_request("GET", traffic.admin_url + "/metrics",
                     headers={"Authorization": "Bearer " + TOKEN})
    assert 'xgate_consumer_requests_total{consumer="alice"} 4' in r.body.decode()
    assert 'xgate_consumer_requests_total{consumer="bob"} 1' in r.body.decode()


def test_dashboard_page_is_self_contained(traffic):
    r = http_request("GET", traffic.admin_url + "/dashboard")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    page = r.body.decode()
    assert 'fetch("/stats"' in page
    # Nothing from elsewhere, and no numbers of this gateway baked in.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "users" not in page and "alice" not in page


class Cells(HTMLParser):
    """Rows of a table (by id) in a dumped DOM: [{class: text}]."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "table":
            self.depth += 1
        elif self.depth and tag == "tr":
            self.rows.append({})
        elif self.depth and tag == "td":
            self.cell = (attrs.get("class") or "").split(" ")[0]
            self.rows[-1][self.cell] = ""

    def handle_endtag(self, tag):
        if self.depth and tag == "table":
            self.depth -= 1
        elif tag == "td":
            self.cell = None

    def handle_data(self, data):
        if self.depth and self.cell is not None:
            self.rows[-1][self.cell] += data


def table(dom, table_id):
    parser = Cells(table_id)
    parser.feed(dom)
    return [row for row in parser.rows if row]


def run_chromium(url, workdir, *extra):
    """chromium --headless with a throwaway profile; returns stdout. Bounded in time."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--user-data-dir=%s" % (workdir / "profile"), "--window-size=1400,1700",
            "--virtual-time-budget=4000", *extra, url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=scaled(90))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-deps.sh "
                                             "installs the Debian package; make test runs it)")
def test_dashboard_in_chromium(traffic, tmp_path):
    url = traffic.admin_url + "/dashboard#token=" + TOKEN
    dom = run_chromium(url, tmp_path, "--dump-dom")
    rows = {row["name"]: row for row in table(dom, "routes")}
    expect = {"users": 7, "orders": 3, "orders-fail": 2, "keyed": 6, "(no route)": 2}
    for name, count in expect.items():
        assert name in rows, (name, rows)
        assert rows[name]["requests"] == str(count), rows[name]
    assert rows["orders-fail"]["errors"] == "2" and rows["orders-fail"]["s5xx"] == "2"
    consumers = [(r["name"], r["requests"]) for r in table(dom, "consumers")]
    assert consumers == [("alice", "4"), ("bob", "1")]
    targets = {r["target"]: r for r in table(dom, "targets")}
    assert targets["127.0.0.1:1"]["breaker"] == "open"
    busiest = [(r["name"], r["requests"]) for r in table(dom, "busiest-5m")]
    assert busiest[:2] == [("users", "7"), ("keyed", "6")]
    # The page's own numbers are exactly /stats'.
    s = stats(traffic, TOKEN)
    assert {r["name"] or "(no route)": str(r["requests"]) for r in s["routes"]} == \
        {name: row["requests"] for name, row in rows.items()}
    shot = build_dir() / "dashboard.png"
    run_chromium(url, tmp_path, "--screenshot=%s" % shot, "--hide-scrollbars")
    assert shot.stat().st_size > 10000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_dashboard_without_token_says_so(traffic, tmp_path):
    dom = run_chromium(traffic.admin_url + "/dashboard", tmp_path, "--dump-dom")
    assert "admin token required" in dom
    assert table(dom, "routes") == [] or "users" not in dom
