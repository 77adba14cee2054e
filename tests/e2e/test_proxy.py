"""End-to-end tests of the gateway core: routing, balancing, streaming, failures, reload."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (base_config, free_port, http_raw, http_request, parse_responses,
                      pattern_sha256, pattern_stream, run_check, xgate_bin)


def route(name, paths, upstream, **kw):
    r = {"name": name, "paths": paths, "upstream": upstream}
    r.update(kw)
    return r


def pool(name, *targets, **kw):
    u = {"name": name, "targets": [{"address": t.address if hasattr(t, "address") else t}
                                   for t in targets]}
    u.update(kw)
    return u


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_routing_404_405_and_error_format(upstream, gateway):
    users, orders = upstream(name="users"), upstream(name="orders")
    gw = gateway(base_config(
        upstreams=[users, orders],
        routes=[route("users", ["/api/users"], "users", methods=["GET", "POST"]),
                route("orders", ["/api/orders"], "orders"),
                route("order-exact", ["/api/orders/special$"], "users")]))
    r = http_request("GET", gw.url("/api/users/7?x=1"))
    assert r.status == 200 and r.json()["upstream"] == "users"
    assert r.json()["path"] == "/api/users/7" and r.json()["query"] == "x=1"
    assert http_request("GET", gw.url("/api/users")).json()["upstream"] == "users"
    assert http_request("GET", gw.url("/api/orders/special")).json()["upstream"] == "users"
    assert http_request("GET", gw.url("/api/orders/special/1")).json()["upstream"] == "orders"
    r = http_request("GET", gw.url("/api/usersX"))
    assert r.status == 404
    body = r.json()
    assert body["status"] == 404 and body["error"] and body["request_id"]
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == body["request_id"]
    r = http_request("DELETE", gw.url("/api/users/1"))
    assert r.status == 405
    assert set(m.strip() for m in r.headers["allow"].split(",")) >= {"GET", "POST"}
    assert "DELETE" not in r.headers["allow"]
    assert not any(q.path.startswith("/api/usersX") for q in users.requests + orders.requests)


def test_round_robin_across_two_targets(upstream, gateway):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway(base_config(upstreams=[pool("users", a, b)],
                             routes=[route("users", ["/"], "users")]))
    seen = [http_request("GET", gw.url("/x")).json()["upstream"] for _ in range(20)]
    assert seen.count("a") == 10 and seen.count("b") == 10
    assert all(seen[i] != seen[i + 1] for i in range(len(seen) - 1))


def test_upstream_connections_are_reused(upstream, gateway):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    conn = http.client.HTTPConnection("127.0.0.1", gw.port(), timeout=5)
    for i in range(50):
        conn.request("GET", "/item/%d" % i)
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    conn.close()
    for i in range(20):
        assert http_request("GET", gw.url("/fresh/%d" % i)).status == 200
    assert len(up.requests) == 70
    assert up.connections <= 2, "upstream saw %d connections for 70 requests" % up.connections


def test_forwarded_headers_and_hop_by_hop_removed(upstream, gateway):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    r = http_request("GET", gw.url("/h"), headers={
        "X-Request-Id": "client-id-123", "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "X-Forwarded-For": "6.6.6.6",
        "Proxy-Authorization": "Basic Zm9v", "TE": "trailers", "X-Kept": "yes"})
    h = r.json()["headers"]
    assert h["x-request-id"] == "client-id-123"
    assert r.headers["x-request-id"] == "client-id-123"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-kept"] == "yes"
    for hop in ("x-secret-hop", "keep-alive", "proxy-authorization", "te"):
        assert hop not in h, hop
    r = http_request("GET", gw.url("/h"), headers={"X-Request-Id": "bad id with spaces!"})
    rid = r.json()["headers"]["x-request-id"]
    assert rid != "bad id with spaces!" and re.fullmatch(r"[A-Za-z0-9._:-]+", rid)


def test_pipelined_requests_answered_in_order(upstream, gateway):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    raw = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    raw += b"GET /p/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = parse_responses(http_raw(gw.port(), raw))
    assert [json.loads(b)["path"] for _, _, b in out] == ["/p/%d" % i for i in range(5)] + ["/p/last"]


def test_chunked_request_and_response(upstream, gateway):
    def handler(req):
        return 200, {"X-Got": req.body_sha256}, iter([b"part-one,", b"part-two,", b"end"])
    up = upstream(name="users", handler=handler)
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    body = b"hello, chunked world"
    raw = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"5;ext=1\r\nhello\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (len(body) - 5, body[5:]))
    [(status, headers, got)] = parse_responses(http_raw(gw.port(), raw))
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert got == b"part-one,part-two,end"
    assert headers["x-got"] == hashlib.sha256(body).hexdigest()
    assert up.requests[0].headers.get("transfer-encoding") == "chunked"


def test_100mb_upload_and_download_stream(upstream, gateway):
    size = 100 * 1024 * 1024

    def handler(req):
        if req.method == "GET":
            return 200, {"Content-Length": str(size)}, pattern_stream(size)
        return 200, {}, json.dumps({"sha": req.body_sha256, "len": req.body_len}).encode()
    up = upstream(name="big", handler=handler, keep_body_max=0)
    cfg = base_config(upstreams=[up], routes=[route("r", ["/"], "big")],
                      limits={"max_body_bytes": 1 << 30}, access_log=None)
    gw = gateway(cfg)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(gw.pid))
            time.sleep(0.05)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    base = rss_kb(gw.pid)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port(), timeout=60)
    conn.request("POST", "/up", body=pattern_stream(size), headers={"Content-Length": str(size)})
    resp = conn.getresponse()
    assert resp.status == 200
    got = json.loads(resp.read())
    assert got == {"sha": pattern_sha256(size), "len": size}
    conn.request("GET", "/down")
    resp = conn.getresponse()
    digest, n = hashlib.sha256(), 0
    while True:
        piece = resp.read(1 << 20)
        if not piece:
            break
        digest.update(piece)
        n += len(piece)
    conn.close()
    stop.set()
    t.join()
    assert n == size and digest.hexdigest() == pattern_sha256(size)
    growth_mb = (peak[0] - base) / 1024
    assert growth_mb < 48, "gateway RSS grew by %.1f MB during 100 MB transfers" % growth_mb


def test_dead_target_502_and_retry_to_live_one(upstream, gateway):
    live = upstream(name="live")
    dead = "127.0.0.1:%d" % free_port()
    gw = gateway(base_config(
        upstreams=[pool("mixed", dead, live, retries=1),
                   pool("dead", dead, retries=0)],
        routes=[route("mixed", ["/mixed"], "mixed"), route("dead", ["/dead"], "dead")]))
    for _ in range(10):
        r = http_request("GET", gw.url("/mixed"))
        assert r.status == 200 and r.json()["upstream"] == "live"
    r = http_request("GET", gw.url("/dead"))
    assert r.status == 502 and r.json()["status"] == 502


def test_slow_target_504_at_read_timeout(upstream, gateway):
    slow = upstream(name="slow", delay_s=3)
    gw = gateway(base_config(upstreams=[pool("slow", slow, timeouts_ms={"read": 400})],
                             routes=[route("r", ["/"], "slow")]))
    t0 = time.monotonic()
    r = http_request("GET", gw.url("/slow"))
    elapsed = time.monotonic() - t0
    assert r.status == 504
    assert 0.3 < elapsed < 2.0, elapsed


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n",
    b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("raw", SMUGGLING, ids=range(len(SMUGGLING)))
def test_smuggling_attempts_rejected_before_upstream(upstream, gateway, raw):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    out = http_raw(gw.port(), raw + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    responses = parse_responses(out)
    assert responses, "no response to %r" % raw
    assert responses[0][0] in (400, 501), (raw, responses[0][0])
    time.sleep(0.1)
    assert up.requests == [], "upstream saw %r" % up.requests


def test_limits_413_414_431_and_408(upstream, gateway):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")],
                             limits={"max_body_bytes": 1000, "max_header_bytes": 4096,
                                     "max_request_line": 1024, "header_timeout_ms": 500}))
    r = http_request("POST", gw.url("/b"), body=b"x" * 1001)
    assert r.status == 413
    raw = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"y" * 2048 + b"\r\n0\r\n\r\n"
    assert parse_responses(http_raw(gw.port(), raw))[0][0] == 413
    assert http_request("GET", gw.url("/" + "a" * 2000)).status == 414
    assert http_request("GET", gw.url("/h"), headers={"X-Big": "b" * 5000}).status == 431
    t0 = time.monotonic()
    out = http_raw(gw.port(), b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert parse_responses(out + b"\r\n\r\n" if not out.endswith(b"}\n") else out)[0][0] == 408
    assert time.monotonic() - t0 < 3
    assert len(up.requests) == 0 or all(q.path != "/c" for q in up.requests)


def test_strip_prefix_head_and_no_body_statuses(upstream, gateway):
    def handler(req):
        if req.path.endswith("/204"):
            return 204, {}, b""
        if req.path.endswith("/304"):
            return 304, {"ETag": "x"}, b""
        return 200, {}, json.dumps({"path": req.path}).encode()
    up = upstream(name="svc", handler=handler)
    gw = gateway(base_config(upstreams=[up], routes=[
        route("svc", ["/svc"], "svc", strip_prefix=True)]))
    assert http_request("GET", gw.url("/svc/a/b?q=1")).json()["path"] == "/a/b"
    assert http_request("GET", gw.url("/svc")).json()["path"] == "/"
    raw = (b"HEAD /svc/x HTTP/1.1\r\nHost: x\r\n\r\nGET /svc/204 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /svc/304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = http_raw(gw.port(), raw)
    heads = out.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"204", b"304"]
    assert heads[0].endswith(b"\r\n\r\n") and heads[1].endswith(b"\r\n\r\n")


def test_expect_100_continue(upstream, gateway):
    up = upstream(name="users")
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "users")]))
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = b""
        while b"}" not in data:
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
    assert up.requests[0].body_len == 5 and "expect" not in up.requests[0].headers


def test_sighup_reload_under_load_loses_nothing(upstream, gateway, tmp_path):
    a = upstream(name="a")
    cfg = base_config(upstreams=[pool("users", a)], routes=[route("r", ["/"], "users")],
                      access_log=None)
    gw = gateway(cfg)
    wrk = subprocess.Popen(["wrk", "-t1", "-c8", "-d4s", "--latency", gw.url("/load")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for i in range(6):
        time.sleep(0.4)
        cfg["routes"].append(route("extra%d" % i, ["/extra%d" % i], "users"))
        gw.reload(cfg)
    out = wrk.communicate(timeout=30)[0]
    assert "requests in" in out, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    assert int(re.search(r"(\d+) requests in", out).group(1)) > 100
    gw.wait_log(r"generation 7")
    assert http_request("GET", gw.url("/extra5")).status == 200


def test_sighup_with_bad_config_keeps_serving(upstream, gateway):
    up = upstream(name="users")
    cfg = base_config(upstreams=[up], routes=[route("r", ["/"], "users")])
    gw = gateway(cfg)
    bad = json.loads(json.dumps(cfg))
    bad["routes"][0]["upstream"] = "nope"
    gw.reload(bad)
    gw.wait_log(r"routes\[0\]\.upstream: unknown upstream \"nope\"")
    assert http_request("GET", gw.url("/still")).status == 200


def test_sigterm_drains_in_flight_requests(upstream, gateway):
    slow = upstream(name="slow", delay_s=1.0)
    gw = gateway(base_config(upstreams=[slow], routes=[route("r", ["/"], "slow")]))
    result = {}

    def call():
        result["r"] = http_request("GET", gw.url("/drain"))
    t = threading.Thread(target=call)
    t.start()
    slow.wait_requests(1)
    gw.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert result["r"].status == 200
    assert gw.proc.wait(10) == 0
    gw.expected_exit = True


BAD_CONFIGS = [
    ({"routes": [{"name": "r", "paths": ["/"], "upstream": "pay"}]},
     'routes[0].upstream: unknown upstream "pay"'),
    ({"listeners": [{"name": "p", "address": "127.0.0.1:99999"}]}, "listeners[0].address"),
    ({"limits": {"max_header_bytes": "big"}}, "limits.max_header_bytes: must be an integer"),
    ({"bogus_key": 1}, "bogus_key: unknown key"),
    ({"upstreams": [{"name": "u", "targets": []}]}, "upstreams[0].targets"),
    ({"upstreams": [{"name": "u", "balance": "random", "targets": [{"address": "127.0.0.1:1"}]}]},
     "upstreams[0].balance"),
    ({"routes": [{"name": "r", "paths": ["nope"], "upstream": "u"}]}, "routes[0].paths[0]"),
    ({"routes": [{"name": "r", "paths": ["/"], "upstream": "u", "methods": ["FETCH"]}]},
     "routes[0].methods[0]"),
    ({"consumers": [{"name": "c", "api_keys": ["${XGATE_TEST_UNSET_VAR}"]}]},
     "XGATE_TEST_UNSET_VAR"),
]


@pytest.mark.parametrize("patch,expected", BAD_CONFIGS, ids=range(len(BAD_CONFIGS)))
def test_config_check_reports_json_paths(tmp_path, patch, expected):
    cfg = base_config(upstreams=[{"name": "u", "targets": [{"address": "127.0.0.1:1"}]}],
                      routes=[{"name": "ok", "paths": ["/"], "upstream": "u"}])
    cfg.update(patch)
    code, out = run_check(cfg, tmp_path)
    assert code == 1, out
    assert expected in out, out


def test_config_check_ok_and_syntax_error(tmp_path):
    cfg = base_config(upstreams=[{"name": "u", "targets": [{"address": "127.0.0.1:1"}]}],
                      routes=[{"name": "ok", "paths": ["/"], "upstream": "u"}])
    code, out = run_check(cfg, tmp_path)
    assert code == 0 and "configuration OK" in out
    (tmp_path / "b").mkdir()
    code, out = run_check('{"workers": 1,', tmp_path / "b")
    assert code == 1 and re.search(r":\d+:\d+:", out), out


def test_env_substitution_in_config(upstream, gateway):
    up = upstream(name="users")
    cfg = base_config(upstreams=[up], routes=[route("r", ["${XG_ROUTE_PREFIX}"], "users")])
    gw = gateway(cfg, env={"XG_ROUTE_PREFIX": "/from-env"})
    assert http_request("GET", gw.url("/from-env/x")).status == 200
    assert http_request("GET", gw.url("/other")).status == 404


def test_upstream_closing_idle_connections_silently_loses_nothing(upstream, gateway):
    # The upstream closes every connection after one response without saying so: pooled
    # connections go stale. GETs may meet one and must be retried on a fresh connection;
    # requests with a body must never be sent on one.
    up = upstream(name="flaky", close_after=1, close_silently=True)
    gw = gateway(base_config(upstreams=[up], routes=[route("r", ["/"], "flaky")]))
    for i in range(20):
        r = http_request("GET", gw.url("/g/%d" % i))
        assert r.status == 200, (i, r)
        time.sleep(0.01)
        r = http_request("POST", gw.url("/p/%d" % i), body=b"payload-%d" % i)
        assert r.status == 200 and r.json()["body_len"] == len(b"payload-%d" % i), (i, r)
    assert [q.path for q in up.requests if q.method == "POST"] == ["/p/%d" % i for i in range(20)]
