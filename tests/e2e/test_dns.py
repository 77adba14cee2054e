"""DNS discovery: host-name targets (A/AAAA) and SRV upstreams resolved through a tiny
authoritative DNS server on loopback UDP whose answers the tests change at run time.
Covers traffic moving after the TTL with no failed request, NXDOMAIN keeping the last
addresses (and /status + metrics showing it), SRV priority/weight/ports, the 503 before
the first answer, and config errors naming the JSON path."""
import socket
import struct
import threading
import time

import pytest

from conftest import base_config, http_request, run_check, scaled

T_A, T_AAAA, T_SRV = 1, 28, 33


class DnsServer:
    """Answers A/AAAA/SRV from self.records {(name, type): [rdata...]} with self.ttl.
    A name in self.nxdomain (or in no record) gets NXDOMAIN; one in self.silent no answer."""

    def __init__(self, ttl=1):
        self.ttl = ttl
        self.records = {}
        self.nxdomain = set()
        self.silent = set()
        self.queries = []
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="dns")
        self._thread.start()

    def set(self, name, rtype, values):
        with self._lock:
            self.records[(name.lower(), rtype)] = list(values)

    def stop(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def _loop(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply:
                self.sock.sendto(reply, peer)

    @staticmethod
    def _name(data, off):
        labels = []
        while data[off]:
            n = data[off]
            labels.append(data[off + 1:off + 1 + n].decode())
            off += n + 1
        return ".".join(labels).lower(), off + 1

    @staticmethod
    def _encode(name):
        out = b""
        for label in name.rstrip(".").split("."):
            out += bytes([len(label)]) + label.encode()
        return out + b"\0"

    def _rdata(self, rtype, value):
        if rtype == T_A:
            return socket.inet_pton(socket.AF_INET, value)
        if rtype == T_AAAA:
            return socket.inet_pton(socket.AF_INET6, value)
        prio, weight, port, target = value
        return struct.pack("!HHH", prio, weight, port) + self._encode(target)

    def _answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        name, off = self._name(data, 12)
        qtype, _qclass = struct.unpack("!HH", data[off:off + 4])
        question = data[12:off + 4]
        with self._lock:
            self.queries.append((name, qtype))
            if name in self.silent:
                return None
            known = any(n == name for n, _ in self.records) and name not in self.nxdomain
            values = self.records.get((name, qtype), []) if known else []
            ttl = self.ttl
        rcode = 0 if known else 3
        answers = b""
        for v in values:
            rd = self._rdata(qtype, v)
            answers += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, ttl, len(rd)) + rd
        head = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(values),
                           0, 0)
        return head + question + answers


def dns_config(dns, upstreams, **top):
    cfg = base_config(upstreams=upstreams,
                      routes=[{"name": "r", "paths": ["/"], "upstream": upstreams[0]["name"]}],
                      resolver={"servers": [dns.address]}, access_log=None, **top)
    return cfg


def status_of(gw, name):
    r = http_request("GET", gw.admin_url + "/status")
    assert r.status == 200, r
    return next(u for u in r.json()["upstreams"] if u["name"] == name)


def metric(gw, line_start):
    text = http_request("GET", gw.admin_url + "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def dns():
    srv = DnsServer(ttl=1)
    yield srv
    srv.stop()


def target(name, port, **kw):
    return dict({"address": "%s:%d" % (name, port)}, **kw)


def test_a_record_change_moves_traffic_with_no_failed_request(dns, upstream, gateway):
    up2 = upstream(name="v2", host="127.0.0.2", body=b"two")
    upstream(name="v3", host="127.0.0.3", port=up2.port, body=b"three")
    dns.set("users.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{"name": "users", "targets": [target("users.test", up2.port)]}]))
    r = http_request("GET", gw.url("/x"))
    assert r.status == 200 and r.body == b"two", r
    st = status_of(gw, "users")
    assert st["dns"][0]["name"] == "users.test" and st["dns"][0]["type"] == "A/AAAA"
    assert st["dns"][0]["addresses"] == ["127.0.0.2:%d" % up2.port]
    assert st["dns"][0]["last_success"] > 0 and st["dns"][0]["ok"] is True
    assert metric(gw, 'xgate_dns_addresses{upstream="users"}') == 1

    statuses, bodies = [], []
    stop = threading.Event()

    # Bounded by time, not by count: a fast gateway finishes any fixed count before the
    # next resolution (interval 1 s) and the loop would end with no request left to move.
    give_up = time.monotonic() + scaled(20)

    def loop():
        while not stop.is_set() and time.monotonic() < give_up:
            resp = http_request("GET", gw.url("/x"))
            statuses.append(resp.status)
            bodies.append(resp.body)

    t = threading.Thread(target=loop)
    t.start()
    try:
        time.sleep(0.3)
        dns.set("users.test", T_A, ["127.0.0.3"])
        wait_until(lambda: bodies and bodies[-1] == b"three", 6, "traffic on 127.0.0.3")
        n = len(bodies)
        wait_until(lambda: len(bodies) >= n + 20, 5, "more requests")
    finally:
        stop.set()
        t.join(30)
    assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]
    assert bodies[0] == b"two"
    assert all(b == b"three" for b in bodies[n:]), set(bodies[n:])
    st = status_of(gw, "users")
    assert st["dns"][0]["addresses"] == ["127.0.0.3:%d" % up2.port]
    assert {"127.0.0.2:%d" % up2.port, "127.0.0.3:%d" % up2.port} <= {
        x["address"] for x in st["targets"]}
    assert metric(gw, 'xgate_dns_addresses{upstream="users"}') == 1
    assert metric(gw, 'xgate_dns_resolutions_total{upstream="users",outcome="ok"}') >= 2


def test_nxdomain_keeps_the_last_addresses_and_status_shows_the_error(dns, upstream, gateway):
    dns.ttl = 300  # interval_s, not the TTL, drives re-resolution here
    up = upstream(name="a", host="127.0.0.2", body=b"a")
    dns.set("keep.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{"name": "keep", "targets": [target("keep.test", up.port)],
                                   "resolve": {"interval_s": 1}}]))
    assert http_request("GET", gw.url("/")).body == b"a"
    dns.nxdomain.add("keep.test")
    wait_until(lambda: (status_of(gw, "keep")["dns"][0].get("last_error") or "")
               .startswith("nxdomain"), 6, "the NXDOMAIN in /status")
    st = status_of(gw, "keep")["dns"][0]
    assert st["ok"] is False and st["last_failure"] >= st["last_success"] > 0
    assert st["addresses"] == ["127.0.0.2:%d" % up.port]
    for _ in range(10):
        r = http_request("GET", gw.url("/"))
        assert r.status == 200 and r.body == b"a", r
    assert metric(gw, 'xgate_dns_resolutions_total{upstream="keep",outcome="nxdomain"}') >= 1
    assert metric(gw, 'xgate_dns_addresses{upstream="keep"}') == 1
    dns.nxdomain.discard("keep.test")
    wait_until(lambda: status_of(gw, "keep")["dns"][0]["ok"], 6, "recovery")


def test_srv_priority_weight_and_ports(dns, upstream, gateway):
    a = upstream(name="a", host="127.0.0.2", body=b"a")
    b = upstream(name="b", host="127.0.0.3", body=b"b")
    backup = upstream(name="backup", body=b"backup")
    dns.set("_http._tcp.svc.test", T_SRV, [(10, 3, a.port, "a.svc.test"),
                                            (10, 1, b.port, "b.svc.test"),
                                            (20, 1, backup.port, "backup.svc.test")])
    dns.set("a.svc.test", T_A, ["127.0.0.2"])
    dns.set("b.svc.test", T_A, ["127.0.0.3"])
    dns.set("backup.svc.test", T_A, ["127.0.0.1"])
    gw = gateway(dns_config(dns, [{"name": "svc", "dns": {"srv": "_http._tcp.svc.test"}}]))
    seen = [http_request("GET", gw.url("/")).body for _ in range(40)]
    assert seen.count(b"a") == 30 and seen.count(b"b") == 10, seen
    st = status_of(gw, "svc")["dns"][0]
    assert st["type"] == "SRV"
    assert sorted(st["addresses"]) == sorted(["127.0.0.2:%d" % a.port, "127.0.0.3:%d" % b.port])
    assert not backup.requests
    # The record set changes: b leaves, traffic follows without errors.
    dns.set("_http._tcp.svc.test", T_SRV, [(10, 1, a.port, "a.svc.test")])
    wait_until(lambda: len(status_of(gw, "svc")["dns"][0]["addresses"]) == 1, 6, "SRV change")
    for _ in range(10):
        r = http_request("GET", gw.url("/"))
        assert r.status == 200 and r.body == b"a", r


def test_first_answer_pending_is_503_then_serves(dns, upstream, gateway):
    up = upstream(name="late", host="127.0.0.2", body=b"late")
    dns.set("late.test", T_A, ["127.0.0.2"])
    dns.silent.add("late.test")
    gw = gateway(dns_config(dns, [{"name": "late", "targets": [target("late.test", up.port)]}]))
    r = http_request("GET", gw.url("/"))
    assert r.status == 503, r
    assert r.json()["error"] in ("upstream name not resolved yet",
                                 "upstream name does not resolve"), r.json()
    dns.silent.discard("late.test")
    wait_until(lambda: http_request("GET", gw.url("/")).status == 200, 10, "first answer")
    assert up.requests


def test_static_and_host_name_targets_mix(dns, upstream, gateway):
    s = upstream(name="s", body=b"static")
    d = upstream(name="d", host="127.0.0.2", body=b"dyn")
    dns.set("mix.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{"name": "mix", "targets": [
        {"address": s.address}, target("mix.test", d.port)]}]))
    seen = {http_request("GET", gw.url("/")).body for _ in range(10)}
    assert seen == {b"static", b"dyn"}, seen


def test_config_errors_name_the_json_path(tmp_path):
    def check(cfg, expect):
        code, out = run_check(cfg, tmp_path)
        assert code != 0 and expect in out, out

    def cfg_with(up, **top):
        c = base_config(upstreams=[up], routes=[{"name": "r", "paths": ["/"],
                                                 "upstream": up["name"]}], **top)
        return c

    check(cfg_with({"name": "u", "targets": [{"address": "bad..name:80"}]}),
          "upstreams[0].targets[0].address: invalid host name")
    check(cfg_with({"name": "u", "targets": [{"address": "-x.test:80"}]}),
          "upstreams[0].targets[0].address: invalid host name")
    check(cfg_with({"name": "u", "targets": [{"address": "ok.test:0"}]}),
          "upstreams[0].targets[0].address: invalid port")
    check(cfg_with({"name": "u", "targets": [{"address": "ok.test:80"}]},
                   resolver={"servers": ["dns.test:53"]}),
          "resolver.servers[0]:")
    check(cfg_with({"name": "u", "targets": [{"address": "ok.test:80"}]},
                   resolver={"servers": ["127.0.0.1"]}),
          "resolver.servers[0]:")
    check(cfg_with({"name": "u", "targets": [{"address": "ok.test:80"}]},
                   resolver={"servers": []}),
          "resolver.servers:")
    check(cfg_with({"name": "u", "dns": {}}), "upstreams[0].dns.srv: required")
    check(cfg_with({"name": "u", "dns": {"srv": "bad name"}}),
          "upstreams[0].dns.srv: invalid SRV name")
    check(cfg_with({"name": "u", "dns": {"srv": "_x._tcp.a.test", "ttl": 1}}),
          "upstreams[0].dns.ttl")
    check(cfg_with({"name": "u", "targets": [{"address": "127.0.0.1:80"}],
                    "resolve": {"interval_s": 5}}),
          "upstreams[0].resolve: only valid with host-name targets")
    check(cfg_with({"name": "u", "targets": [{"address": "a.test:80"}],
                    "resolve": {"interval_s": 0}}),
          "upstreams[0].resolve.interval_s")
    check(cfg_with({"name": "u", "targets": [{"address": "a.test:80"}, {"address": "a.test:80"}]}),
          "upstreams[0].targets[1].address: duplicate target")
    check(cfg_with({"name": "u", "targets": []}), "upstreams[0].targets: at least one target")
    code, out = run_check(cfg_with({"name": "u", "targets": [{"address": "a.test:80"}],
                                    "resolve": {"interval_s": 30}},
                                   resolver={"servers": ["127.0.0.1:5353", "[::1]:53"]}),
                          tmp_path)
    assert code == 0, out


def test_in_flight_request_finishes_on_a_removed_address(dns, upstream, gateway):
    def slow(req):
        if req.path == "/slow":
            time.sleep(1.5)
        return 200, {"Content-Type": "text/plain"}, b"two"

    up2 = upstream(name="v2", host="127.0.0.2", handler=slow)
    upstream(name="v3", host="127.0.0.3", port=up2.port, body=b"three")
    dns.set("move.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{"name": "move", "targets": [target("move.test", up2.port)],
                                   "timeouts_ms": {"read": 10000}}]))
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=http_request("GET", gw.url("/slow"), timeout=20)))
    t.start()
    up2.wait_requests(1)
    dns.set("move.test", T_A, ["127.0.0.3"])
    wait_until(lambda: http_request("GET", gw.url("/")).body == b"three", 6, "the move")
    st = status_of(gw, "move")
    old = next(x for x in st["targets"] if x["address"] == "127.0.0.2:%d" % up2.port)
    assert old["active"] == 1, st  # still serving the slow request, taking no new ones
    t.join(20)
    assert result["r"].status == 200 and result["r"].body == b"two", result


def test_kept_addresses_leave_when_health_checks_fail(dns, upstream, gateway):
    up = upstream(name="h", host="127.0.0.2", body=b"h")
    dns.set("health.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{
        "name": "h", "targets": [target("health.test", up.port)],
        "health_check": {"path": "/health", "interval_ms": 100, "unhealthy_after": 1,
                         "healthy_after": 1}}]))
    assert http_request("GET", gw.url("/")).status == 200
    dns.nxdomain.add("health.test")
    wait_until(lambda: not status_of(gw, "h")["dns"][0]["ok"], 6, "the failing lookup")
    assert http_request("GET", gw.url("/")).status == 200  # last addresses kept
    up.healthy = False
    wait_until(lambda: http_request("GET", gw.url("/")).status == 503, 6, "health failing it")
    assert http_request("GET", gw.url("/")).json()["error"] == "no healthy upstream"


def test_targets_added_by_dns_are_health_checked(dns, upstream, gateway):
    a = upstream(name="a", host="127.0.0.2", body=b"a")
    upstream(name="b", host="127.0.0.3", port=a.port, body=b"b", healthy=False)
    dns.set("hc.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{
        "name": "hc", "targets": [target("hc.test", a.port)],
        "health_check": {"path": "/health", "interval_ms": 100, "unhealthy_after": 1,
                         "healthy_after": 1}}]))
    dns.set("hc.test", T_A, ["127.0.0.2", "127.0.0.3"])
    wait_until(lambda: len(status_of(gw, "hc")["targets"]) == 2, 6, "the second address")
    wait_until(lambda: not next(x for x in status_of(gw, "hc")["targets"]
                                if x["address"].startswith("127.0.0.3"))["up"], 6,
               "the new target checked down")
    assert {http_request("GET", gw.url("/")).body for _ in range(10)} == {b"a"}


def test_reload_starts_from_the_last_answers(dns, upstream, gateway):
    up = upstream(name="r", host="127.0.0.2", body=b"r")
    dns.set("reload.test", T_A, ["127.0.0.2"])
    dns.silent.add("other.test")
    cfg = dns_config(dns, [{"name": "r", "targets": [target("reload.test", up.port)]}])
    gw = gateway(cfg)
    assert http_request("GET", gw.url("/")).status == 200
    dns.silent.add("reload.test")  # the name server is now unreachable for it
    cfg["upstreams"][0]["targets"].append(target("other.test", up.port))
    gw.reload(cfg)
    gw.wait_log("generation 2")
    for _ in range(10):
        r = http_request("GET", gw.url("/"))
        assert r.status == 200 and r.body == b"r", r


class Http6Server:
    """A minimal HTTP/1.1 server on [::1] answering every request with body."""

    def __init__(self, body):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6
            daemon_threads = True

        self.server = Server(("::1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_aaaa_record(dns, gateway):
    srv = Http6Server(b"six")
    try:
        dns.set("six.test", T_AAAA, ["::1"])
        gw = gateway(dns_config(dns, [{"name": "six", "targets": [target("six.test", srv.port)]}]))
        r = http_request("GET", gw.url("/"))
        assert r.status == 200 and r.body == b"six", r
        assert status_of(gw, "six")["dns"][0]["addresses"] == ["[::1]:%d" % srv.port]
    finally:
        srv.stop()


def test_name_that_never_resolves_is_503(dns, gateway):
    dns.nxdomain.add("none.test")
    gw = gateway(dns_config(dns, [{"name": "none", "targets": [target("none.test", 80)]}]))
    r = http_request("GET", gw.url("/"))
    assert r.status == 503 and r.json()["error"] == "upstream name does not resolve", r
    st = status_of(gw, "none")
    assert st["targets"] == [] and st["dns"][0]["addresses"] == []
    assert st["dns"][0]["last_success"] == 0 and "nxdomain" in st["dns"][0]["last_error"]
    assert metric(gw, 'xgate_dns_resolutions_total{upstream="none",outcome="nxdomain"}') >= 1
    assert metric(gw, 'xgate_dns_addresses{upstream="none"}') == 0


def test_request_without_host_gets_the_target_host_name(dns, upstream, gateway):
    up = upstream(name="h10", host="127.0.0.2")
    dns.set("host.test", T_A, ["127.0.0.2"])
    gw = gateway(dns_config(dns, [{"name": "h10", "targets": [target("host.test", up.port)]}]))
    with socket.create_connection((gw.host(), gw.port()), timeout=5) as s:
        s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"), data[:200]
    assert up.requests[-1].headers["host"] == "host.test:%d" % up.port
