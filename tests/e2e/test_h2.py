"""HTTP/2 from clients: h2 over TLS (ALPN) and h2c with prior knowledge on a plain
listener next to HTTP/1.1, route features per stream (auth, rate limit, gRPC errors),
request bodies, multiplexing, h2load, the HTTP/2 attack classes with crafted frames
(Rapid Reset, CONTINUATION flood, HPACK bomb, concurrency) and graceful GOAWAY on reload
and SIGTERM with an in-flight request finishing."""
import json
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from conftest import base_config, http_request, run_check, scaled
from test_tls import make_cert

API_KEY = "k-h2-0123456789abcdef"


def h2_cfg(up, listener_extra=None, routes=None, **top):
    cfg = base_config(upstreams=[up], routes=routes or [
        {"name": "api", "paths": ["/"], "upstream": up.name}], **top)
    cfg["listeners"][0]["http2"] = True
    cfg["listeners"][0].update(listener_extra or {})
    return cfg


def curl(*args, timeout=20):
    p = subprocess.run(["curl", "-s", "-S", "--max-time", "10"] + list(args),
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class H2Client:
    """A raw-socket HTTP/2 client (python3-h2) that can also write crafted frames."""

    def __init__(self, host, port, tls=False):
        self.sock = socket.create_connection((host, port), timeout=5)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="default.test")
            assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}   # stream id -> {"headers", "body", "trailers", "reset"}
        self.goaway = None
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", headers=None, body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":path", path),
                (":authority", "localhost")] + list(headers or [])
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.responses[sid] = {"headers": None, "body": b"", "trailers": None,
                               "reset": None, "ended": False}
        self.flush()
        return sid

    def pump(self, until, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not until() and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            for ev in self.conn.receive_data(data):
                self.on_event(ev)
            try:
                self.flush()
            except OSError:
                self.closed = True
        return until()

    def on_event(self, ev):
        r = self.responses.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            r["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.TrailersReceived):
            r["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            r["body"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            r["ended"] = True
        elif isinstance(ev, h2.events.StreamReset) and r is not None:
            r["reset"] = ev.error_code
            r["ended"] = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev.error_code

    def done(self, sid):
        return lambda: self.responses[sid]["ended"]

    def raw(self, data):
        self.sock.sendall(data)

    def read_goaway(self, timeout=5.0):
        """Reads raw frames until a GOAWAY (its error code) or the close."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(buf) >= 9:
                ln = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + ln:
                    break
                if buf[3] == 7:
                    return struct.unpack(">I", buf[9 + 4:9 + 8])[0]
                buf = buf[9 + ln:]
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return None
            if not data:
                return None
            buf += data
        return None

    def close(self):
        self.sock.close()


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_block(path="/"):
    import hpack
    return hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", path),
                                   (":authority", "localhost")])


def test_h2c_prior_knowledge_and_http1_on_the_same_port(upstream, gateway):
    up = upstream(name="svc", body=b"hello h2")
    gw = gateway(h2_cfg(up))
    code, out, err = curl("--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
                          "-H", "X-Tag: t1", gw.url("/a/b?x=1"))
    assert code == 0, err
    body, _, meta = out.rpartition("\n")
    assert meta == "2 200" and body == "hello h2", out
    req = up.requests[-1]
    assert req.path == "/a/b" and req.query == "x=1"
    assert req.headers["x-tag"] == "t1"
    assert req.headers["x-forwarded-proto"] == "http"
    assert req.headers["x-forwarded-for"] == "127.0.0.1"
    assert re.match(r"^[0-9a-f]{24}$", req.headers["x-request-id"])
    assert "127.0.0.1" in req.headers["host"] or req.headers["host"].startswith("127.0.0.1")
    # HTTP/1.1 keeps working on the same port, on a fresh connection
    r = http_request("GET", gw.url("/plain"))
    assert r.status == 200 and r.body == b"hello h2"
    time.sleep(0.2)
    logs = [e for e in gw.access_log() if e.get("path") in ("/a/b", "/plain")]
    h2log = [e for e in logs if e.get("proto") == "h2"]
    assert h2log and h2log[0]["stream"] == 1 and h2log[0]["status"] == 200, logs
    assert any(e.get("proto") == "http/1.1" for e in logs), logs
    m = http_request("GET", "http://%s/metrics" % gw.config["admin"]["address"]).body.decode()
    assert 'xgate_http_requests_by_proto_total{proto="h2"} 1' in m
    assert re.search(r'xgate_http_requests_by_proto_total\{proto="http/1.1"\} [1-9]', m)


def test_plain_listener_without_http2_is_http1_only(upstream, gateway):
    up = upstream(name="svc", body=b"x")
    cfg = h2_cfg(up)
    del cfg["listeners"][0]["http2"]
    gw = gateway(cfg)
    code, out, err = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w",
                          "%{http_version}", gw.url("/"))
    assert out != "2", (code, out, err)
    assert http_request("GET", gw.url("/")).status == 200


def test_h2_over_tls_alpn(upstream, gateway, tmp_path, free_port):
    up = upstream(name="svc", body=b"secure")
    crt, key = make_cert(tmp_path, "default.test", ["default.test"])
    cfg = base_config(upstreams=[up], routes=[{"name": "api", "paths": ["/"], "upstream": "svc"}])
    cfg["listeners"][0]["tls"] = {"certificates": [{"cert": crt, "key": key}]}
    gw = gateway(cfg)
    port = gw.port()
    code, out, err = curl("--http2", "-k", "-w", "\n%{http_version} %{http_code}",
                          "https://127.0.0.1:%d/t" % port)
    assert code == 0, err
    assert out.endswith("\n2 200") and out.startswith("secure"), out
    assert up.requests[-1].headers["x-forwarded-proto"] == "https"
    code, out, err = curl("--http1.1", "-k", "-w", "\n%{http_version}",
                          "https://127.0.0.1:%d/t" % port)
    assert out.endswith("\n1.1"), (out, err)
    # "http2": false keeps the listener at HTTP/1.1 (ALPN http/1.1 only)
    cfg["listeners"][0]["http2"] = False
    gw.reload(cfg)
    time.sleep(scaled(0.5))
    code, out, err = curl("--http2", "-k", "-w", "\n%{http_version}",
                          "https://127.0.0.1:%d/t" % port)
    assert out.endswith("\n1.1"), (out, err)


def test_auth_rate_limit_and_grpc_errors_per_stream(upstream, gateway):
    up = upstream(name="svc", body=b"ok")
    routes = [{"name": "key", "paths": ["/key"], "upstream": "svc", "auth": {"api_key": {}}},
              {"name": "rl", "paths": ["/rl"], "upstream": "svc",
               "rate_limit": {"per_s": 1, "burst": 2}}]
    cfg = h2_cfg(up, routes=routes, auth={"api_keys": {"header": "X-API-Key"}},
                 consumers=[{"name": "app", "api_keys": [API_KEY]}])
    gw = gateway(cfg)
    c = H2Client("127.0.0.1", gw.port())
    s1 = c.request("/key")
    s2 = c.request("/key", headers=[("x-api-key", API_KEY)])
    s3 = c.request("/key", headers=[("content-type", "application/grpc")])
    assert c.pump(lambda: all(c.responses[s]["ended"] for s in (s1, s2, s3)))
    r1 = c.responses[s1]
    assert r1["headers"][":status"] == "401"
    doc = json.loads(r1["body"])
    assert doc["status"] == 401 and doc["request_id"] == r1["headers"]["x-request-id"]
    assert c.responses[s2]["headers"][":status"] == "200"
    assert c.responses[s2]["body"] == b"ok"
    g = c.responses[s3]
    assert g["headers"][":status"] == "200"
    assert g["headers"]["grpc-status"] == "16" and g["body"] == b""
    statuses = []
    for _ in range(4):
        s = c.request("/rl")
        assert c.pump(c.done(s))
        statuses.append(c.responses[s]["headers"][":status"])
    assert statuses[:2] == ["200", "200"] and "429" in statuses[2:], statuses
    s = c.request("/rl", headers=[("content-type", "application/grpc+proto")])
    assert c.pump(c.done(s))
    assert c.responses[s]["headers"]["grpc-status"] == "8"
    c.close()


def test_post_body_and_too_large(upstream, gateway):
    up = upstream(name="svc", handler=lambda req: (200, {"Content-Type": "text/plain"},
                                                   b"got %d" % len(req.body)))
    cfg = h2_cfg(up, limits={"max_body_bytes": 100000})
    gw = gateway(cfg)
    code, out, err = curl("--http2-prior-knowledge", "--data-binary", "a=1&b=2", gw.url("/p"))
    assert out == "got 7", (out, err)
    assert up.requests[-1].method == "POST"
    assert up.requests[-1].headers["content-length"] == "7"
    assert up.requests[-1].body == b"a=1&b=2"
    c = H2Client("127.0.0.1", gw.port())
    s = c.request("/big", method="POST", body=b"x" * 16000, end=False)
    for _ in range(10):
        c.conn.send_data(s, b"y" * 16000)
        c.flush()
        c.pump(lambda: c.responses[s]["headers"] is not None, timeout=0.2)
        if c.responses[s]["headers"]:
            break
    c.pump(lambda: c.responses[s]["headers"] is not None)
    assert c.responses[s]["headers"][":status"] == "413"
    c.close()


def test_cache_compression_cors_and_head_per_stream(upstream, gateway):
    import gzip
    text = b"".join(b"line %d of a long enough text body\n" % i for i in range(200))
    up = upstream(name="svc", handler=lambda req: (200, {"Content-Type": "text/plain",
                                                         "X-Total": "7"}, text))
    routes = [{"name": "c", "paths": ["/cached"], "upstream": "svc", "cache": {"ttl_s": 60}},
              {"name": "api", "paths": ["/api"], "upstream": "svc",
               "cors": {"origins": ["https://app.example"], "methods": ["GET", "PUT"],
                        "expose": ["X-Total"]}},
              {"name": "z", "paths": ["/z"], "upstream": "svc"}]
    gw = gateway(h2_cfg(up, routes=routes, compression={
        "algorithms": ["gzip"], "types": ["text/*"], "min_bytes": 100}))
    c = H2Client("127.0.0.1", gw.port())
    # compression: the transform runs over the stream's body
    s = c.request("/z", headers=[("accept-encoding", "gzip")])
    assert c.pump(c.done(s))
    r = c.responses[s]
    assert r["headers"]["content-encoding"] == "gzip", r["headers"]
    assert gzip.decompress(r["body"]) == text
    assert int(r["headers"]["content-length"]) == len(r["body"])
    # the cache: the second answer comes from it, with Age
    before = len(up.requests)
    for _ in range(2):
        s = c.request("/cached")
        assert c.pump(c.done(s))
        assert c.responses[s]["headers"][":status"] == "200"
        assert c.responses[s]["body"] == text
    assert len(up.requests) == before + 1
    assert "age" in c.responses[s]["headers"]
    # CORS: a preflight answered by the gateway, the actual request gets the headers
    s = c.request("/api/x", method="OPTIONS", headers=[
        ("origin", "https://app.example"), ("access-control-request-method", "PUT")])
    assert c.pump(c.done(s))
    h = c.responses[s]["headers"]
    assert h[":status"] == "204", h
    assert h["access-control-allow-origin"] == "https://app.example"
    s = c.request("/api/x", headers=[("origin", "https://app.example")])
    assert c.pump(c.done(s))
    h = c.responses[s]["headers"]
    assert h["access-control-allow-origin"] == "https://app.example"
    assert "x-total" in h.get("access-control-expose-headers", "").lower()
    # HEAD: the length, no body
    s = c.request("/z", method="HEAD")
    assert c.pump(c.done(s))
    assert c.responses[s]["headers"][":status"] == "200"
    assert c.responses[s]["body"] == b""
    c.close()


def test_multiplexed_concurrent_streams(upstream, gateway):
    up = upstream(name="svc", delay_s=0.4, body=b"slow")
    gw = gateway(h2_cfg(up))
    c = H2Client("127.0.0.1", gw.port())
    t0 = time.monotonic()
    sids = [c.request("/m/%d" % i) for i in range(20)]
    assert c.pump(lambda: all(c.responses[s]["ended"] for s in sids), timeout=10)
    took = time.monotonic() - t0
    assert all(c.responses[s]["headers"][":status"] == "200" for s in sids)
    assert all(c.responses[s]["body"] == b"slow" for s in sids)
    assert took < scaled(3.0), took  # 20 x 0.4 s one after the other would be 8 s
    c.close()


def test_h2load_all_2xx(upstream, gateway):
    up = upstream(name="svc", body=b"x" * 100)
    gw = gateway(h2_cfg(up, access_log=None))
    p = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10", gw.url("/load")],
                       capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded", out), out
    assert re.search(r"status codes: 2000 2xx", out), out
    print("h2load:", [l for l in out.splitlines() if l.startswith("finished in")])


def test_rapid_reset_gets_goaway(upstream, gateway):
    up = upstream(name="svc", delay_s=0.5)
    gw = gateway(h2_cfg(up))
    c = H2Client("127.0.0.1", gw.port())
    c.pump(lambda: False, timeout=0.2)
    block = hpack_block()
    data = b""
    for i in range(600):
        sid = 1 + 2 * i
        data += frame(1, 0x4, sid, block) + frame(3, 0, sid, struct.pack(">I", 8))
    try:
        c.raw(data)
    except OSError:
        pass
    assert c.read_goaway() == 11  # ENHANCE_YOUR_CALM
    c.close()
    assert gw.alive()
    assert http_request("GET", gw.url("/")).status == 200


def test_continuation_flood_gets_goaway(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(h2_cfg(up))
    c = H2Client("127.0.0.1", gw.port())
    c.pump(lambda: False, timeout=0.2)
    data = frame(1, 0, 1, hpack_block())  # no END_HEADERS
    data += b"".join(frame(9, 0, 1, b"\x40\x01a\x01b") for _ in range(10000))
    try:
        c.raw(data)
    except OSError:
        pass
    assert c.read_goaway() == 11
    c.close()
    assert gw.alive()


def test_hpack_bomb_is_431(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(h2_cfg(up, limits={"max_header_bytes": 4096}))
    c = H2Client("127.0.0.1", gw.port())
    c.pump(lambda: False, timeout=0.2)
    # a 1000-byte field indexed once, then referenced 300 times by a one-byte index
    block = b"\x82\x86\x84\x01\x09localhost" + b"\x40\x05x-big\x7f\xe9\x06" + b"a" * 1000
    block += bytes([0x80 | 62]) * 300
    c.conn.streams  # noqa: the h2 state machine does not know this stream; parse raw
    c.raw(frame(1, 0x5, 1, block))
    buf = b""
    status = None
    deadline = time.monotonic() + 5
    while status is None and time.monotonic() < deadline:
        c.sock.settimeout(1)
        try:
            buf += c.sock.recv(65536)
        except socket.timeout:
            continue
        i = 0
        while i + 9 <= len(buf):
            ln = int.from_bytes(buf[i:i + 3], "big")
            if i + 9 + ln > len(buf):
                break
            if buf[i + 3] == 1 and int.from_bytes(buf[i + 5:i + 9], "big") == 1:
                import hpack
                status = dict(hpack.Decoder().decode(buf[i + 9:i + 9 + ln]))[":status"]
            i += 9 + ln
    assert status == "431"
    assert up.requests == []
    c.close()


@pytest.mark.parametrize("fields,status", [
    ([(":method", "CONNECT"), (":authority", "example.com:443")], "400"),
    # no :authority nor host: nghttp2 makes it a stream error
    ([(":method", "GET"), (":scheme", "http"), (":path", "/")], "reset 1"),
    ([(":method", "GET"), (":scheme", "http"), (":path", "/x" + "a" * 9000),
      (":authority", "localhost")], "414"),
])
def test_requests_http1_rules_refuse(upstream, gateway, fields, status):
    import hpack
    up = upstream(name="svc")
    gw = gateway(h2_cfg(up))
    c = H2Client("127.0.0.1", gw.port())
    c.raw(frame(1, 0x5, 1, hpack.Encoder().encode(fields)))
    st = read_frames(c.sock, lambda st: st["streams"].get(1, {}).get("ended"), timeout=3)
    c.close()
    r = st["streams"].get(1, {})
    got = "reset %d" % r["reset"] if r.get("reset") is not None else r.get("status")
    assert got == status, st
    assert up.requests == []


@pytest.mark.parametrize("bad", [[("X-Upper", "1")], [("connection", "close")],
                                 [("te", "gzip")], [("transfer-encoding", "chunked")],
                                 [(":bogus", "1")]])
def test_malformed_header_is_a_stream_error(upstream, gateway, bad):
    import hpack
    up = upstream(name="svc")
    gw = gateway(h2_cfg(up))
    c = H2Client("127.0.0.1", gw.port())
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                                    (":authority", "localhost")] + bad)
    c.raw(frame(1, 0x5, 1, block))
    codes, buf = [], b""
    deadline = time.monotonic() + 3
    while not codes and time.monotonic() < deadline:
        c.sock.settimeout(0.5)
        try:
            buf += c.sock.recv(65536)
        except socket.timeout:
            continue
        i = 0
        while i + 9 <= len(buf):
            ln = int.from_bytes(buf[i:i + 3], "big")
            if i + 9 + ln > len(buf):
                break
            if buf[i + 3] == 3:
                codes.append(struct.unpack(">I", buf[i + 9:i + 13])[0])
            i += 9 + ln
    c.close()
    assert codes == [1], codes  # PROTOCOL_ERROR
    assert up.requests == []
    assert http_request("GET", gw.url("/")).status == 200


def test_max_concurrent_streams_refused(upstream, gateway):
    """Beyond h2_max_concurrent_streams: REFUSED_STREAM while the client has not
    acknowledged the SETTINGS; after that exceeding the limit it knows is a connection
    error (RFC 9113 5.1.2 allows both; nghttp2 does the second)."""
    up = upstream(name="svc", delay_s=1.0)
    gw = gateway(h2_cfg(up, limits={"h2_max_concurrent_streams": 2}))
    c = H2Client("127.0.0.1", gw.port())
    sids = [c.request("/c/%d" % i) for i in range(4)]  # before the server's SETTINGS
    c.pump(lambda: all(c.responses[s]["ended"] for s in sids), timeout=8)
    refused = [s for s in sids if c.responses[s]["reset"] == 7]
    ok = [s for s in sids if c.responses[s]["headers"] and
          c.responses[s]["headers"][":status"] == "200"]
    assert len(refused) == 2 and len(ok) == 2, c.responses
    c.close()
    c = H2Client("127.0.0.1", gw.port())
    c.pump(lambda: False, timeout=0.3)  # SETTINGS exchanged
    c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 100
    c.conn.remote_settings.acknowledge()
    sids = [c.request("/c/%d" % i) for i in range(4)]
    c.pump(lambda: c.goaway is not None, timeout=5)
    assert c.goaway == 1  # PROTOCOL_ERROR
    c.close()
    assert http_request("GET", gw.url("/")).status == 200


def test_zero_window_stall_meets_the_idle_timeout(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(h2_cfg(up, limits={"idle_timeout_ms": 500}))
    c = H2Client("127.0.0.1", gw.port())
    t0 = time.monotonic()
    s = c.request("/once")
    assert c.pump(c.done(s))
    # a client that stops granting window and only pings gains nothing
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.flush()
    s = c.request("/stalled")
    for _ in range(5):
        c.conn.ping(b"12345678")
        c.flush()
        time.sleep(0.15)
    assert c.read_goaway(timeout=5) == 0
    took = time.monotonic() - t0
    assert 0.4 < took < scaled(3.0), took
    c.close()


def read_frames(sock, until, timeout=8.0):
    """Raw frames from a connection nothing was read from yet (python-h2 takes a GOAWAY
    for the end of the connection; the streams below its last id go on): the GOAWAY's
    error code and per stream the status, body and whether it ended."""
    import hpack
    dec, buf, st = hpack.Decoder(), b"", {"goaway": None, "streams": {}}
    deadline = time.monotonic() + timeout
    while not until(st) and time.monotonic() < deadline:
        sock.settimeout(0.2)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            ftype, flags = buf[3], buf[4]
            sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
            payload, buf = buf[9:9 + ln], buf[9 + ln:]
            r = st["streams"].setdefault(sid, {"status": None, "body": b"", "ended": False})
            if ftype == 3:
                r["reset"] = struct.unpack(">I", payload[:4])[0]
                r["ended"] = True
            if ftype == 7:
                st["goaway"] = struct.unpack(">I", payload[4:8])[0]
            elif ftype == 1:
                r["status"] = r["status"] or dict(dec.decode(payload)).get(":status")
            elif ftype == 0:
                r["body"] += payload
            if ftype in (0, 1) and flags & 1:
                r["ended"] = True
    return st


@pytest.mark.parametrize("how", ["sighup", "sigterm"])
def test_goaway_lets_inflight_request_finish(upstream, gateway, how):
    up = upstream(name="svc", delay_s=1.0, body=b"finished")
    cfg = h2_cfg(up)
    gw = gateway(cfg)
    c = H2Client("127.0.0.1", gw.port())
    s = c.request("/slow")
    time.sleep(0.3)
    if how == "sighup":
        gw.reload(cfg)
    else:
        gw.expected_exit = True
        gw.proc.send_signal(15)
    st = read_frames(c.sock, lambda st: st["goaway"] is not None and
                     st["streams"].get(s, {}).get("ended"))
    assert st["goaway"] == 0, st
    r = st["streams"][s]
    assert r["status"] == "200" and r["body"] == b"finished", st
    c.close()
    if how == "sigterm":
        gw.proc.wait(10)
    else:
        assert http_request("GET", gw.url("/")).status == 200


def test_config_errors_name_the_path(tmp_path, upstream):
    up = upstream(name="svc")
    cfg = h2_cfg(up, limits={"h2_max_concurrent_streams": 0})
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "limits.h2_max_concurrent_streams" in out, out
    cfg = h2_cfg(up)
    cfg["listeners"][0]["http2"] = "yes"
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "listeners[0].http2" in out, out
