"""End-to-end tests of observability and operations: /metrics (exact counters, histogram
consistency, promtool, a real Prometheus scraping it), /status, /reload, /config redaction,
admin API errors, xgatectl against a running (and a stopped) gateway, access-log reopen."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import base_config, free_port, http_request, xgatectl

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
GOOD_KEY = "obs-good-key-5b1f"


def route(name, paths, upstream, **kw):
    r = {"name": name, "paths": paths, "upstream": upstream}
    r.update(kw)
    return r


def closed_port_address():
    """A loopback address nobody listens on: connections are refused."""
    return "127.0.0.1:%d" % free_port()


# ---- exposition parsing ------------------------------------------------------------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "unparseable exposition line: %r" % line
        labels = {k: v.encode().decode("unicode_escape") for k, v in LABEL_RE.findall(m.group(3) or "")}
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def scrape(gw):
    r = http_request("GET", gw.admin_url + "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.body.decode()


def wait_metrics(gw, expected, timeout=10.0):
    """Scrapes until every (name, labels) in expected has its value; returns the last text."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(gw)
        samples = parse_metrics(text)
        wrong = {k: (samples.get((k[0], frozenset(k[1]))), v) for k, v in expected.items()
                 if samples.get((k[0], frozenset(k[1]))) != v}
        if not wrong:
            return text
        if time.monotonic() > deadline:
            raise AssertionError("metrics never reached the expected values (got, want): %r\n%s"
                                 % (wrong, text))
        time.sleep(0.1)


def E(name, **labels):
    return (name, tuple(sorted(labels.items())))


def wait_status(url, want, timeout=3.0):
    """Workers adopt a published config at their next loop tick: allow a short delay."""
    deadline = time.monotonic() + timeout
    while True:
        r = http_request("GET", url)
        if r.status == want or time.monotonic() > deadline:
            return r.status
        time.sleep(0.05)


def admin_json(gw, method, path):
    r = http_request(method, gw.admin_url + path)
    return r.status, r.json()


def wait_target_down(gw, upstream_name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, status = admin_json(gw, "GET", "/status")
        for up in status["upstreams"]:
            if up["name"] == upstream_name and not any(t["up"] for t in up["targets"]):
                return status
        time.sleep(0.1)
    raise AssertionError("target of %s never marked down: %r" % (upstream_name, status))


# ---- the known-sequence gateway ----------------------------------------------------------

@pytest.fixture
def observed(upstream, gateway):
    """A gateway with routes that answer 200, 401 (API key), 404, 502 (refused) and 503
    (health-checked target down), after a fixed sequence of requests."""
    good = upstream(name="good")
    dead_addr, refused_addr = closed_port_address(), closed_port_address()
    cfg = base_config(
        upstreams=[
            {"name": "pool", "targets": [{"address": good.address}], "retries": 0},
            {"name": "dead", "targets": [{"address": dead_addr}], "retries": 0,
             "health_check": {"path": "/health", "interval_ms": 100, "unhealthy_after": 1,
                              "healthy_after": 1}},
            {"name": "refused", "targets": [{"address": refused_addr}], "retries": 0},
        ],
        routes=[
            route("ok", ["/ok"], "pool"),
            route("secure", ["/secure"], "pool", auth={"api_key": {}}),
            route("down", ["/down"], "dead"),
            route("flaky", ["/flaky"], "refused"),
        ],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "obs-client", "api_keys": [GOOD_KEY]}],
    )
    gw = gateway(cfg)
    wait_target_down(gw, "dead")
    for _ in range(3):
        assert http_request("GET", gw.url("/ok")).status == 200
    for _ in range(2):
        assert http_request("GET", gw.url("/nope")).status == 404
    for _ in range(2):
        assert http_request("GET", gw.url("/secure")).status == 401
    assert http_request("GET", gw.url("/secure"), headers={"X-API-Key": "wrong"}).status == 401
    assert http_request("GET", gw.url("/secure"), headers={"X-API-Key": GOOD_KEY}).status == 200
    for _ in range(2):
        assert http_request("GET", gw.url("/down")).status == 503
    for _ in range(2):
        assert http_request("GET", gw.url("/flaky")).status == 502
    gw.good, gw.dead_addr, gw.refused_addr = good, dead_addr, refused_addr
    return gw


def test_metrics_exact_counters_and_histogram(observed):
    gw = observed
    text = wait_metrics(gw, {
        E("xgate_http_requests_total", route="ok", code="200"): 3,
        E("xgate_http_requests_total", route="", code="404"): 2,
        E("xgate_http_requests_total", route="secure", code="401"): 3,
        E("xgate_http_requests_total", route="secure", code="200"): 1,
        E("xgate_http_requests_total", route="down", code="503"): 2,
        E("xgate_http_requests_total", route="flaky", code="502"): 2,
        E("xgate_auth_failures_total", reason="missing"): 2,
        E("xgate_auth_failures_total", reason="bad_api_key"): 1,
        E("xgate_upstream_requests_total", upstream="pool", target=gw.good.address,
          outcome="success"): 4,
        E("xgate_upstream_requests_total", upstream="refused", target=gw.refused_addr,
          outcome="connect_error"): 2,
        E("xgate_upstream_target_up", upstream="pool", target=gw.good.address): 1,
        E("xgate_upstream_target_up", upstream="dead", target=gw.dead_addr): 0,
        E("xgate_rate_limited_total", route="ok"): 0,
        E("xgate_config_generation"): 1,
        E("xgate_config_last_reload_success"): 1,
    })
    s = parse_metrics(text)
    # Nothing else was counted: no other codes, and the down target was never tried.
    codes = {dict(k[1])["route"] + "/" + dict(k[1])["code"]: v
             for k, v in s.items() if k[0] == "xgate_http_requests_total"}
    assert codes == {"ok/200": 3, "/404": 2, "secure/401": 3, "secure/200": 1, "down/503": 2,
                     "flaky/502": 2}, codes
    assert not [k for k in s if k[0] == "xgate_upstream_requests_total"
                and dict(k[1])["upstream"] == "dead"]
    assert sum(v for k, v in s.items() if k[0] == "xgate_auth_failures_total") == 3
    # Histogram: cumulative buckets, +Inf == _count == requests of the route, sum plausible.
    for rname, total in {"ok": 3, "": 2, "secure": 4, "down": 2, "flaky": 2}.items():
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in s.items()
                          if k[0] == "xgate_http_request_duration_seconds_bucket"
                          and dict(k[1])["route"] == rname), key=lambda b: b[0])
        assert len(buckets) >= 10 and buckets[-1][0] == float("inf"), buckets
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "buckets not cumulative: %r" % buckets
        assert counts[-1] == total
        assert value(s, "xgate_http_request_duration_seconds_count", route=rname) == total
        dsum = value(s, "xgate_http_request_duration_seconds_sum", route=rname)
        assert 0 < dsum < total * 10, (rname, dsum)
    gen_ts = value(s, "xgate_config_last_reload_timestamp_seconds")
    assert abs(gen_ts - time.time()) < 600
    assert value(s, "xgate_connections_active", listener="public") is not None
    # HELP/TYPE for the SPEC families.
    for family, kind in [("xgate_http_requests_total", "counter"),
                         ("xgate_http_request_duration_seconds", "histogram"),
                         ("xgate_upstream_requests_total", "counter"),
                         ("xgate_upstream_target_up", "gauge"),
                         ("xgate_connections_active", "gauge"),
                         ("xgate_auth_failures_total", "counter"),
                         ("xgate_rate_limited_total", "counter"),
                         ("xgate_config_generation", "gauge")]:
        assert "# TYPE %s %s\n" % (family, kind) in text
        assert "# HELP %s " % family in text
    # Prometheus' own linter accepts the whole exposition.
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_connections_gauge_returns_to_zero(observed):
    wait_metrics(observed, {E("xgate_connections_active", listener="public"): 0})


def test_prometheus_server_scrapes_admin(observed, tmp_path):
    gw = observed
    wait_metrics(gw, {E("xgate_http_requests_total", route="ok", code="200"): 3})
    admin = gw.config["admin"]["address"]
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: xgate\n    static_configs:\n"
        "      - targets: ['%s']\n" % admin)
    (tmp_path / "data").mkdir()
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([PROMETHEUS, "--config.file=%s" % (tmp_path / "prometheus.yml"),
                             "--storage.tsdb.path=%s" % (tmp_path / "data"),
                             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        query = 'xgate_http_requests_total{job="xgate",route="ok",code="200"}'
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": query}))
        deadline, last = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    last = json.load(resp)
                if last["status"] == "success" and last["data"]["result"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert last and last["data"]["result"], "series never queryable: %r\n%s" % (
            last, (tmp_path / "prometheus.log").read_text())
        series = last["data"]["result"][0]
        assert series["metric"]["__name__"] == "xgate_http_requests_total"
        assert series["metric"]["route"] == "ok" and series["metric"]["code"] == "200"
        assert float(series["value"][1]) == 3
        # The scrape target is healthy and histogram quantiles can be computed from it.
        q = urllib.parse.urlencode({"query": 'up{job="xgate"}'})
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?%s" % (port, q),
                                    timeout=5) as resp:
            up = json.load(resp)
        assert float(up["data"]["result"][0]["value"][1]) == 1
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_status_fields(observed):
    gw = observed
    code, st = admin_json(gw, "GET", "/status")
    assert code == 200
    assert re.match(r"^\d+\.\d+\.\d+", st["version"])
    assert isinstance(st["uptime_s"], int) and 0 <= st["uptime_s"] < 600
    assert st["workers"] == 1
    c = st["config"]
    assert c["generation"] == 1 and c["last_reload_ok"] is True and c["last_reload_errors"] == []
    assert c["path"] == gw.config_path
    assert abs(c["loaded_at"] - time.time()) < 600
    f = st["features"]
    assert isinstance(f["xdp"], str) and f["xdp"] == "off"  # no edge section
    assert isinstance(f["ktls"], bool) and isinstance(f["sockmap"], bool)
    assert set(f["io_uring"]) == {"single_issuer", "defer_taskrun"}
    assert isinstance(st["connections_active"], int)
    ups = {u["name"]: u["targets"] for u in st["upstreams"]}
    assert set(ups) == {"pool", "dead", "refused"}
    assert ups["pool"][0] == {"address": gw.good.address, "up": True, "breaker": "closed",
                              "active": 0}
    assert ups["dead"][0]["up"] is False


def test_reload_good_and_bad(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a], routes=[route("a", ["/a"], "a")])
    gw = gateway(cfg)
    assert http_request("GET", gw.url("/b")).status == 404
    # Good: a new route appears, the generation moves on.
    cfg["routes"].append(route("b", ["/b"], "a"))
    gw.write_config(cfg)
    code, body = admin_json(gw, "POST", "/reload")
    assert code == 200 and body == {"status": "ok", "generation": 2}
    assert wait_status(gw.url("/b"), 200) == 200
    # Bad: rejected with the JSON path of each problem; the old config keeps serving.
    bad = json.loads(json.dumps(cfg))
    bad["routes"].append(route("c", ["/c"], "nosuchpool"))
    bad["routes"][0]["methods"] = ["FETCH!"]
    gw.write_config(bad)
    code, body = admin_json(gw, "POST", "/reload")
    assert code == 422 and body["status"] == "rejected"
    assert any(e.startswith("routes[2].upstream") and "nosuchpool" in e
               for e in body["errors"]), body
    assert len(body["errors"]) >= 2, body
    assert http_request("GET", gw.url("/b")).status == 200
    _, st = admin_json(gw, "GET", "/status")
    assert st["config"]["generation"] == 2 and st["config"]["last_reload_ok"] is False
    assert st["config"]["last_reload_errors"] == body["errors"]
    wait_metrics(gw, {E("xgate_config_generation"): 2,
                      E("xgate_config_last_reload_success"): 0})
    # Not JSON at all.
    with open(gw.config_path, "w") as fh:  # not via write_config: gw.config stays a dict
        fh.write("{ not json")
    code, body = admin_json(gw, "POST", "/reload")
    assert code == 422 and body["errors"]
    # Fixed again: success is reported again.
    gw.write_config(cfg)
    code, body = admin_json(gw, "POST", "/reload")
    assert code == 200 and body["generation"] == 3
    wait_metrics(gw, {E("xgate_config_last_reload_success"): 1})


def test_config_redaction(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(
        upstreams=[a],
        routes=[route("a", ["/a"], "a", auth={"api_key": {}},
                      headers={"X-Internal-Token": "HEADER-SECRET-4242"})],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "literal", "api_keys": ["LITERAL-SECRET-KEY-9f3a"]},
                   {"name": "fromenv", "api_keys": ["${OBS_TEST_KEY}"]}])
    gw = gateway(cfg, env={"OBS_TEST_KEY": "ENV-SECRET-VALUE-77c1"})
    # The env key really is in use (so its value was loaded) ...
    assert http_request("GET", gw.url("/a"), headers={"X-API-Key": "ENV-SECRET-VALUE-77c1",
                                                      "X-Internal-Token": "HEADER-SECRET-4242"}
                        ).status == 200
    r = http_request("GET", gw.admin_url + "/config")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    text = r.body.decode()
    # ... but neither it nor any literal secret appears.
    for secret in ("LITERAL-SECRET-KEY-9f3a", "ENV-SECRET-VALUE-77c1", "HEADER-SECRET-4242"):
        assert secret not in text
    shown = r.json()
    assert shown["consumers"][0]["api_keys"] == ["<redacted>"]
    assert shown["consumers"][1]["api_keys"] == ["${OBS_TEST_KEY}"]
    assert shown["auth"]["api_keys"]["header"] == "X-API-Key"
    assert shown["upstreams"][0]["targets"][0]["address"] == a.address
    assert shown["routes"][0]["paths"] == ["/a"]


def test_admin_errors_and_isolation(observed):
    gw = observed
    r = http_request("GET", gw.admin_url + "/nope")
    assert r.status == 404
    body = r.json()
    assert body["status"] == 404 and body["error"] and body["request_id"]
    r = http_request("DELETE", gw.admin_url + "/metrics")
    assert r.status == 405 and "GET" in r.headers["allow"]
    assert r.json()["status"] == 405
    r = http_request("GET", gw.admin_url + "/reload")
    assert r.status == 405 and r.headers["allow"] == "POST"
    # Never served on the public listener.
    for path in ("/metrics", "/status", "/config"):
        assert http_request("GET", gw.url(path)).status == 404
    # Keep-alive: several requests on one connection.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", int(gw.admin_url.rsplit(":", 1)[1]), timeout=5)
    try:
        for path in ("/status", "/metrics", "/config"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()


def test_xgatectl_against_running_gateway(observed):
    gw = observed
    admin = gw.config["admin"]["address"]
    p = xgatectl("--admin", admin, "status")
    assert p.returncode == 0, p.stderr
    assert "generation 1" in p.stdout and "pool" in p.stdout and gw.good.address in p.stdout
    assert "DOWN" in p.stdout  # the dead target
    p = xgatectl("--admin", admin, "--json", "status")
    assert p.returncode == 0 and json.loads(p.stdout)["config"]["generation"] == 1
    p = xgatectl("--admin", admin, "stats", "--pin-dir", "/nonexistent-xgate-pins")
    assert p.returncode == 0, p.stderr
    assert "xgate_http_requests_total" in p.stdout and "secure" in p.stdout
    p = xgatectl("--admin", admin, "--json", "stats", "--pin-dir", "/nonexistent-xgate-pins")
    stats = json.loads(p.stdout)
    assert stats["xdp"] is None
    ok = [s for s in stats["gateway"]["xgate_http_requests_total"]
          if s["labels"] == {"route": "ok", "code": "200"}]
    assert ok and ok[0]["value"] == 3
    p = xgatectl("--admin", admin, "reload")
    assert p.returncode == 0 and "reloaded: generation 2" in p.stdout, p.stdout + p.stderr
    with open(gw.config_path, "w") as fh:
        fh.write("{ broken")
    p = xgatectl("--admin", admin, "reload")
    assert p.returncode == 1 and "reload rejected" in p.stderr, p.stdout + p.stderr


def test_xgatectl_when_gateway_not_running(tmp_path):
    addr = "127.0.0.1:%d" % free_port()
    for cmd in (["status"], ["reload"], ["stats"]):
        p = xgatectl("--admin", addr, "--timeout-ms", "2000", *cmd)
        assert p.returncode == 3, (cmd, p.stdout, p.stderr)
        assert ("xgatectl: cannot reach the admin API at %s: Connection refused "
                "(is xgate running?)" % addr) in p.stderr
    missing = str(tmp_path / "no-pins")
    for cmd in (["deny", "list"], ["allow", "add", "198.18.0.0/15"], ["top", "5"]):
        p = xgatectl("--pin-dir", missing, *cmd)
        assert p.returncode == 3 and missing in p.stderr and "is xgate running" in p.stderr, p
    p = xgatectl("deny", "add")
    assert p.returncode == 2
    p = xgatectl("frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr
    p = xgatectl("--help")
    assert p.returncode == 0
    for word in ("status", "reload", "stats", "deny", "allow", "top", "--admin", "--pin-dir",
                 "--json", "Exit status"):
        assert word in p.stdout


def test_access_log_reopen_on_sigusr1(upstream, gateway, tmp_path):
    a = upstream(name="a")
    path = tmp_path / "access.log"
    gw = gateway(base_config(upstreams=[a], routes=[route("a", ["/a"], "a")],
                             access_log={"path": str(path), "format": "json"}))
    for i in range(3):
        assert http_request("GET", gw.url("/a/before-%d" % i)).status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not path.exists() or
                                           path.read_text().count("\n") < 3):
        time.sleep(0.05)
    rotated = tmp_path / "access.log.1"
    os.rename(path, rotated)
    os.kill(gw.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), "access log not reopened after SIGUSR1:\n" + gw.log()
    hostile = "/a/q%22x%5C%0A%FF"
    for i in range(2):
        assert http_request("GET", gw.url("/a/after-%d" % i)).status == 200
    assert http_request("GET", gw.url(hostile)).status in (200, 400)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and path.read_text().count("\n") < 3:
        time.sleep(0.05)
    old = [json.loads(l) for l in rotated.read_text().splitlines()]
    new = [json.loads(l) for l in path.read_text().splitlines()]
    assert [e["path"] for e in old] == ["/a/before-%d" % i for i in range(3)]
    assert [e["path"] for e in new][:2] == ["/a/after-0", "/a/after-1"]
    e = new[0]
    for key in ("time", "request_id", "client", "method", "path", "route", "upstream",
                "status", "bytes_in", "bytes_out", "duration_us", "consumer"):
        assert key in e, e
    assert e["route"] == "a" and e["upstream"] == a.address and e["status"] == 200
    assert e["method"] == "GET" and e["client"].startswith("127.0.0.1:")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", e["time"])
    assert e["bytes_out"] > 0 and e["duration_us"] >= 0 and e["request_id"]
