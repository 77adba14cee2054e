"""Upstream connection-slot queue (max_conns_per_target + queue_timeout_ms): requests past
the cap wait in FIFO order without blocking the worker, 503 when the wait expires, a client
that leaves while queued gives its place up, and the queue is visible in /metrics."""
import socket
import threading
import time

from conftest import base_config, http_request
from test_observability import parse_metrics, scrape, value, wait_metrics


class Gate:
    """An upstream handler that holds requests whose path starts with /hold until released
    and tracks how many requests it serves at once."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0

    def __call__(self, req):
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if req.path.startswith("/hold"):
                self.release.wait(10)
            else:
                time.sleep(0.05)  # a slow upstream, so concurrent requests would overlap
            return 200, {"Content-Type": "text/plain"}, req.path.encode()
        finally:
            with self.lock:
                self.inflight -= 1


def queue_config(up, cap=1, timeout_ms=5000):
    return base_config(
        upstreams=[{"name": up.name, "targets": [{"address": up.address}],
                    "max_conns_per_target": cap, "queue_timeout_ms": timeout_ms}],
        routes=[{"name": "r", "paths": ["/"], "upstream": up.name}])


def depth(gw, name):
    return value(parse_metrics(scrape(gw)), "xgate_upstream_queue_depth", upstream=name)


def wait_depth(gw, name, want):
    wait_metrics(gw, {("xgate_upstream_queue_depth", (("upstream", name),)): want})


def background(gw, path, results, key):
    def run():
        results[key] = http_request("GET", gw.url(path), timeout=15)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cap_serializes_concurrent_requests(upstream, gateway):
    gate = Gate()
    up = upstream(name="slow", handler=gate)
    gw = gateway(queue_config(up, cap=1))
    results = {}
    threads = [background(gw, "/r%d" % i, results, i) for i in range(6)]
    for t in threads:
        t.join(20)
    assert sorted(results) == list(range(6))
    for i, r in results.items():
        assert r.status == 200 and r.body == b"/r%d" % i, r
    assert gate.max_inflight == 1
    text = wait_metrics(gw, {("xgate_upstream_queue_depth", (("upstream", "slow"),)): 0})
    s = parse_metrics(text)
    assert value(s, "xgate_upstream_queue_dequeued_total", upstream="slow") >= 1
    assert value(s, "xgate_upstream_queue_wait_seconds_total", upstream="slow") > 0
    assert value(s, "xgate_upstream_queue_timeouts_total", upstream="slow") == 0


def test_cap_two_allows_two(upstream, gateway):
    gate = Gate()
    up = upstream(name="slow2", handler=gate)
    gw = gateway(queue_config(up, cap=2))
    results = {}
    threads = [background(gw, "/hold%d" % i, results, i) for i in range(3)]
    up.wait_requests(2)
    wait_depth(gw, "slow2", 1)
    assert gate.max_inflight == 2
    gate.release.set()
    for t in threads:
        t.join(20)
    assert [results[i].status for i in range(3)] == [200] * 3
    assert gate.max_inflight == 2


def test_queue_is_fifo(upstream, gateway):
    gate = Gate()
    up = upstream(name="fifo", handler=gate)
    gw = gateway(queue_config(up, cap=1))
    results = {}
    threads = [background(gw, "/hold", results, "hold")]
    up.wait_requests(1)
    for i in range(4):
        threads.append(background(gw, "/q%d" % i, results, i))
        wait_depth(gw, "fifo", i + 1)  # each is queued before the next is sent
    gate.release.set()
    for t in threads:
        t.join(20)
    assert all(r.status == 200 for r in results.values()), results
    assert [r.path for r in up.requests] == ["/hold", "/q0", "/q1", "/q2", "/q3"]
    assert gate.max_inflight == 1


def test_queue_timeout_is_503(upstream, gateway):
    gate = Gate()
    up = upstream(name="to", handler=gate)
    gw = gateway(queue_config(up, cap=1, timeout_ms=300))
    results = {}
    held = background(gw, "/hold", results, "hold")
    up.wait_requests(1)
    start = time.monotonic()
    r = http_request("GET", gw.url("/late"), timeout=10)
    waited = time.monotonic() - start
    assert r.status == 503, r
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == "upstream queue timeout" and body["status"] == 503
    assert body["request_id"]
    assert 0.25 <= waited < 3, waited
    wait_metrics(gw, {("xgate_upstream_queue_timeouts_total", (("upstream", "to"),)): 1,
                      ("xgate_upstream_queue_depth", (("upstream", "to"),)): 0})
    gate.release.set()
    held.join(20)
    assert results["hold"].status == 200
    assert [q.path for q in up.requests] == ["/hold"]  # the timed-out one never went up
    # The slot is free again: a new request goes straight through.
    assert http_request("GET", gw.url("/after")).status == 200


def test_client_abort_leaves_queue(upstream, gateway):
    gate = Gate()
    up = upstream(name="ab", handler=gate)
    gw = gateway(queue_config(up, cap=1))
    results = {}
    held = background(gw, "/hold", results, "hold")
    up.wait_requests(1)
    sock = socket.create_connection((gw.host(), gw.port()), timeout=5)
    sock.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_depth(gw, "ab", 1)
    sock.close()
    wait_depth(gw, "ab", 0)
    later = background(gw, "/next", results, "next")
    wait_depth(gw, "ab", 1)
    gate.release.set()
    held.join(20)
    later.join(20)
    assert results["hold"].status == 200 and results["next"].status == 200
    assert [q.path for q in up.requests] == ["/hold", "/next"]
    s = parse_metrics(scrape(gw))
    assert value(s, "xgate_upstream_queue_timeouts_total", upstream="ab") == 0


def test_queue_config_errors(upstream, gateway):
    up = upstream(name="cfg")
    bad = [
        ({"max_conns_per_target": -1}, "upstreams[0].max_conns_per_target"),
        ({"max_conns_per_target": "2"}, "upstreams[0].max_conns_per_target"),
        ({"queue_timeout_ms": 100}, "upstreams[0].queue_timeout_ms"),
        ({"max_conns_per_target": 1, "queue_timeout_ms": 0}, "upstreams[0].queue_timeout_ms"),
    ]
    for keys, path in bad:
        u = {"name": "cfg", "targets": [{"address": up.address}]}
        u.update(keys)
        cfg = base_config(upstreams=[u], routes=[{"name": "r", "paths": ["/"],
                                                  "upstream": "cfg"}])
        code, output = gateway(cfg, expect_start_failure=True)
        assert code != 0 and path in output, (keys, output)


def test_cap_holds_across_workers(upstream, gateway):
    """Two workers share each target's cap; a slot freed by one worker serves the other's
    queue (noticed by its poll)."""
    gate = Gate()
    up = upstream(name="mw", handler=gate)
    cfg = queue_config(up, cap=1)
    cfg["workers"] = 2
    gw = gateway(cfg)
    results = {}
    threads = [background(gw, "/w%d" % i, results, i) for i in range(8)]
    for t in threads:
        t.join(20)
    assert [results[i].status for i in range(8)] == [200] * 8
    assert gate.max_inflight == 1
    assert len(up.requests) == 8


def test_queued_request_keeps_its_body(upstream, gateway):
    import hashlib
    gate = Gate()
    up = upstream(name="body", handler=gate)
    gw = gateway(queue_config(up, cap=1))
    results = {}
    held = background(gw, "/hold", results, "hold")
    up.wait_requests(1)
    body = bytes(range(256)) * 1024  # 256 KiB: more than the client buffer holds at once
    out = {}

    def post():
        out["r"] = http_request("POST", gw.url("/post"), body=body, timeout=15)
    t = threading.Thread(target=post, daemon=True)
    t.start()
    wait_depth(gw, "body", 1)
    gate.release.set()
    held.join(20)
    t.join(20)
    assert out["r"].status == 200, out["r"]
    assert up.requests[-1].path == "/post"
    assert up.requests[-1].body_sha256 == hashlib.sha256(body).hexdigest()
