"""Checks of the e2e harness itself, independent of build/xgate."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import (Gateway, NetNS, http_raw, parse_responses, pattern_sha256,
                      pattern_stream)


def _conn(up):
    return http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)


def test_upstream_echo_records_request(upstream):
    up = upstream(name="users")
    conn = _conn(up)
    conn.request("POST", "/api/users/7?x=1", body=b"hello",
                 headers={"X-Test": "a", "Content-Type": "text/plain"})
    resp = conn.getresponse()
    echo = json.loads(resp.read())
    assert resp.status == 200
    assert resp.getheader("X-Upstream") == "users"
    assert echo["upstream"] == "users"
    assert echo["method"] == "POST" and echo["path"] == "/api/users/7" and echo["query"] == "x=1"
    assert echo["headers"]["x-test"] == "a"
    assert echo["body_len"] == 5
    assert echo["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    (req,) = up.requests
    assert req.body == b"hello" and ("X-Test", "a") in req.raw_headers


def test_upstream_keepalive_counts_connections(upstream):
    up = upstream()
    conn = _conn(up)
    for i in range(5):
        conn.request("GET", "/r%d" % i)
        assert conn.getresponse().read()
    conn2 = _conn(up)
    conn2.request("GET", "/other")
    conn2.getresponse().read()
    assert len(up.requests) == 6
    assert up.connections == 2
    assert {r.conn_id for r in up.requests[:5]} == {1}


def test_upstream_chunked_request_is_hashed_not_kept(upstream):
    up = upstream(keep_body_max=1000)
    pieces = [os.urandom(3000) for _ in range(10)]
    raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-T: 1\r\n\r\n"
    out = http_raw(up.port, b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + raw)
    (status, _, body), = parse_responses(out)
    assert status == 200
    echo = json.loads(body)
    whole = b"".join(pieces)
    assert echo["body_len"] == len(whole)
    assert echo["body_sha256"] == hashlib.sha256(whole).hexdigest()
    req = up.requests[0]
    assert req.chunked and len(req.body) == 1000 and req.trailers == [("X-T", "1")]


def test_upstream_streams_large_chunked_response(upstream):
    size = 20 * 1024 * 1024
    up = upstream(handler=lambda req: (200, {}, pattern_stream(size)))
    conn = _conn(up)
    conn.request("GET", "/big")
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    digest, total = hashlib.sha256(), 0
    while True:
        data = resp.read(1 << 20)
        if not data:
            break
        digest.update(data)
        total += len(data)
    assert total == size
    assert digest.hexdigest() == pattern_sha256(size)


def test_pattern_stream_is_deterministic_and_order_sensitive():
    a = list(pattern_stream(1 << 20))
    assert b"".join(a) == b"".join(pattern_stream(1 << 20))
    assert hashlib.sha256(b"".join(reversed(a))).hexdigest() != pattern_sha256(1 << 20)


def test_upstream_close_after_and_health(upstream):
    up = upstream(close_after=2)
    out = http_raw(up.port, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
    responses = parse_responses(out)
    assert len(responses) == 2
    assert responses[1][1]["connection"] == "close"
    sick = upstream(healthy=False)
    out = http_raw(sick.port, b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert parse_responses(out)[0][0] == 503
    assert sick.requests == [] and sick.health_requests == 1
    sick.healthy = True
    out = http_raw(sick.port, b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert parse_responses(out)[0][0] == 200


def test_upstream_raw_response_and_delay(upstream):
    up = upstream(raw_response=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
    out = http_raw(up.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.count(b"Content-Length") == 2
    slow = upstream(delay_s=0.3)
    with pytest.raises(socket.timeout):
        conn = http.client.HTTPConnection("127.0.0.1", slow.port, timeout=0.1)
        conn.request("GET", "/")
        conn.getresponse()


def test_upstream_head_and_204_have_no_body(upstream):
    up = upstream(status=204, body=b"")
    out = http_raw(up.port, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"
                   b"Connection: close\r\n\r\n")
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [204, 204]
    assert b"Content-Length" not in out


def test_netns_create_and_cleanup(upstream):
    ns = NetNS()
    with ns:
        assert ns.name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout
        assert len(ns.host_if) <= 15 and len(ns.ns_if) <= 15
        assert ns.host_ip.startswith("198.1") and ns.host_ip != "198.18.0.1"
        up = upstream(host=ns.host_ip, name="host-side")
        out = ns.run(["curl", "-sS", "-m", "5", up.url("/from-ns")], check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["path"] == "/from-ns"
        assert up.requests[0].peer[0] == ns.ns_ip
        ns.run("ip -6 addr show dev %s | grep -q %s" % (ns.ns_if, ns.ns_ip6))
        with NetNS() as other:
            assert other.subnet != ns.subnet and other.host_if != ns.host_if
    assert not ns.exists()


def test_netns_cleanup_on_exception():
    with pytest.raises(RuntimeError):
        with NetNS() as ns:
            proc = ns.popen(["sleep", "60"])
            raise RuntimeError("boom")
    assert not ns.exists()
    assert proc.poll() is not None


FAKE_GATEWAY = textwrap.dedent("""
    import json, signal, socket, sys, time
    cfg = json.load(open(sys.argv[sys.argv.index("-c") + 1]))
    socks = []
    for a in [l["address"] for l in cfg["listeners"]] + [cfg["admin"]["address"]]:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host, port = a.rsplit(":", 1); s.bind((host, int(port))); s.listen(); socks.append(s)
    mode = cfg.get("fake_mode", "clean")
    def term(*_):
        if mode == "asan":
            sys.stderr.write("==1==ERROR: AddressSanitizer: heap-use-after-free\\n")
            sys.exit(1)
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
    if mode == "fail":
        sys.stderr.write("listeners[0].address: bad\\n"); sys.exit(1)
    while True: time.sleep(1)
""")


@pytest.fixture
def fake_gateway_bin(tmp_path):
    path = tmp_path / "fake-xgate"
    path.write_text("#!%s\n%s" % (sys.executable, FAKE_GATEWAY))
    path.chmod(0o755)
    return str(path)


def test_gateway_runner_detects_sanitizer_report(tmp_path, base_config, fake_gateway_bin):
    (tmp_path / "c").mkdir()
    clean = Gateway(base_config(), tmp_path / "c", binary=fake_gateway_bin).start().wait_ready()
    assert clean.finish() == []
    cfg = base_config(fake_mode="asan")
    (tmp_path / "a").mkdir()
    bad = Gateway(cfg, tmp_path / "a", binary=fake_gateway_bin).start().wait_ready()
    problems = bad.finish()
    assert any("exited with code 1" in p for p in problems)
    assert any("AddressSanitizer" in p for p in problems)


def test_gateway_expect_start_failure(gateway, base_config, fake_gateway_bin):
    code, log = gateway(base_config(fake_mode="fail"), binary=fake_gateway_bin,
                        expect_start_failure=True)
    assert code == 1 and "listeners[0].address" in log


def test_gateway_fixture_url_and_env(gateway, base_config, fake_gateway_bin):
    cfg = base_config()
    gw = gateway(cfg, binary=fake_gateway_bin, env={"XG_SECRET": "s"})
    assert gw.url("/x") == "http://%s/x" % cfg["listeners"][0]["address"]
    assert gw.admin_url == "http://" + cfg["admin"]["address"]
    assert gw.env["XG_SECRET"] == "s" and gw.alive()


def test_run_wrk_reports_requests_and_status_errors(upstream):
    from conftest import run_wrk
    up = upstream()
    result = run_wrk(up.url("/load"), duration_s=1, connections=4, method="POST", body=b"abc",
                     headers={"X-Load": "1"})
    assert result["requests"] > 10 and result["status_err"] == 0
    assert len(up.requests) >= result["requests"]
    assert up.requests[-1].body == b"abc" and up.requests[-1].headers["x-load"] == "1"
    failing = upstream(status=503, body=b"no")
    assert run_wrk(failing.url("/"), duration_s=1, connections=2)["status_err"] > 0


def test_upstream_handler_failure_is_visible_and_health_stays_builtin(upstream):
    def handler(req):
        raise KeyError("boom")

    up = upstream(handler=handler)
    out = http_raw(up.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parse_responses(out)[0][0] == 500
    assert any("boom" in e for e in up.errors)
    out = http_raw(up.port, b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert parse_responses(out)[0][0] == 200
