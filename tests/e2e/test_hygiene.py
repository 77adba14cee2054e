"""Request hygiene (issue 10): client trailers (class 2), underscore look-alikes and
forwarding headers, X-Request-Id (class 7), upgrades (class 8)."""
import json
import socket
import time

import pytest

from conftest import base_config, http_request

KEY = "hygiene-key-41d2"


def exchange(port, data, timeout=5):
    """Sends data, returns the first complete response (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].decode("latin-1").split("\r\n")
                headers = {}
                for line in head[1:]:
                    k, _, v = line.partition(":")
                    headers.setdefault(k.strip().lower(), v.strip())
                n = int(headers.get("content-length", "0"))
                if len(buf) >= head_end + 4 + n:
                    return int(head[0].split()[1]), headers, buf[head_end + 4:head_end + 4 + n]
            got = s.recv(65536)
            if not got:
                break
            buf += got
    raise AssertionError("no complete response: %r" % buf)


def gw_with_key(gateway, up, **top):
    cfg = base_config(
        upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
        routes=[{"name": "open", "paths": ["/"], "upstream": "svc"},
                {"name": "key", "paths": ["/key"], "upstream": "svc", "auth": {"api_key": {}}}],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "app", "api_keys": [KEY], "roles": []}], **top)
    return gateway(cfg)


# ---- class 2: trailers ---------------------------------------------------------------------

FORBIDDEN_TRAILERS = [
    ("Transfer-Encoding", "chunked"), ("Content-Length", "999"), ("Host", "evil.test"),
    ("Authorization", "Bearer forged"), ("X-API-Key", KEY), ("Cookie", "session=1"),
    ("X-Consumer", "root"), ("X_Consumer", "root"), ("X-Forwarded-For", "10.0.0.1"),
    ("Forwarded", "for=10.0.0.1"), ("X-Real-IP", "10.0.0.1"), ("X-Request-Id", "forged"),
    ("Connection", "close"), ("Upgrade", "websocket"), ("Trailer", "x"), ("X-Custom", "1"),
]


def chunked_request(path, trailers, extra_headers=""):
    t = "".join("%s: %s\r\n" % kv for kv in trailers)
    return ("POST %s HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n%s\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n%s\r\n" % (path, extra_headers, t)).encode()


@pytest.mark.parametrize("path,headers", [("/open", ""), ("/key", "X-API-Key: %s\r\n" % KEY)])
def test_client_trailers_filtered(upstream, gateway, path, headers):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    allowed = [("Content-Digest", "sha-256=:abc=:"), ("grpc-status", "0")]
    status, _, body = exchange(gw.port(), chunked_request(path, FORBIDDEN_TRAILERS + allowed,
                                                          headers))
    assert status == 200, body
    seen = up.requests[-1]
    assert seen.chunked and seen.body == b"hello world"
    assert seen.trailers == allowed, seen.trailers
    # Identity was set from the head only.
    assert seen.headers.get("x-consumer") == ("app" if path == "/key" else None)


@pytest.mark.parametrize("trailers,kept", [
    ([("X-Consumer", "root"), ("Digest", "md5=x")], [("Digest", "md5=x")]),
    ([], []),
])
def test_trailers_each_split_and_keepalive(upstream, gateway, trailers, kept):
    """The body (and trailer section) arrives byte by byte; the connection then serves
    another request (the filtered section ended the body exactly)."""
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    req = chunked_request("/open", trailers)
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
        s.sendall(b"GET /after HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            data += s.recv(65536)
    assert data.count(b"HTTP/1.1 200") == 2
    assert up.requests[0].trailers == kept and up.requests[0].body == b"hello world"
    assert up.requests[1].path == "/after"


def test_no_trailers_and_bad_trailers(upstream, gateway):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    status, _, _ = exchange(gw.port(), chunked_request("/open", []))
    assert status == 200 and up.requests[-1].trailers == []
    # A malformed trailer line (obs-fold) is a 400, the upstream never gets the end.
    n = len(up.requests)
    bad = (b"POST /open HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\nX-A: 1\r\n folded\r\n\r\n")
    status, _, _ = exchange(gw.port(), bad)
    assert status == 400
    time.sleep(0.1)
    assert len([r for r in up.requests[n:] if r.trailers]) == 0


# ---- class 7: header hygiene ---------------------------------------------------------------

def raw_names(req):
    return [n.lower() for n, _ in req.raw_headers]


def values(req, name):
    return [v for n, v in req.raw_headers if n.lower() == name]


LOOKALIKES = ["X_Consumer", "x_consumer", "X_Forwarded_For", "X-Forwarded_For", "X_Real_IP",
              "X_Forwarded_Proto", "X_Forwarded_Host", "X_Request_Id", "Transfer_Encoding",
              "Content_Length", "Proxy_Authorization", "X_API_Key", "Proxy_Connection",
              "Keep_Alive", "X_Forwarded_Port", "x_forwarded_PROTO"]


def send(gw, path="/open", headers=()):
    lines = "".join("%s: %s\r\n" % kv for kv in headers)
    return exchange(gw.port(), ("GET %s HTTP/1.1\r\nHost: gw.test\r\n%s\r\n"
                                % (path, lines)).encode())


def test_underscore_lookalikes_dropped_by_default(upstream, gateway):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    hdrs = [(n, "spoof") for n in LOOKALIKES] + [("X_Trace_Tag", "keep"), ("My_Header", "k")]
    for path, extra in (("/open", []), ("/key", [("X-API-Key", KEY)])):
        status, _, _ = send(gw, path, hdrs + extra)
        assert status == 200
        seen = up.requests[-1]
        names = raw_names(seen)
        for n in LOOKALIKES:
            assert n.lower() not in names, (n, seen.raw_headers)
        assert values(seen, "x_trace_tag") == ["keep"] and values(seen, "my_header") == ["k"]
        assert "spoof" not in [v for _, v in seen.raw_headers]
        assert values(seen, "x-consumer") == (["app"] if path == "/key" else [])


def test_underscore_lookalike_of_route_match_header(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(
        upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
        routes=[{"name": "t", "paths": ["/t"], "upstream": "svc",
                 "headers": {"X-Tenant": "blue"}},
                {"name": "open", "paths": ["/"], "upstream": "svc"}]))
    status, _, _ = send(gw, "/t", [("X-Tenant", "blue"), ("X_Tenant", "red")])
    assert status == 200
    assert values(up.requests[-1], "x-tenant") == ["blue"]
    assert "x_tenant" not in raw_names(up.requests[-1])
    # On a route that does not read X-Tenant the look-alike is just a header.
    send(gw, "/other", [("X_Tenant", "red")])
    assert values(up.requests[-1], "x_tenant") == ["red"]


@pytest.mark.parametrize("policy,kept", [("drop", []), ("allow", ["X_Consumer", "My_Header"])])
def test_underscore_policy(upstream, gateway, policy, kept):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up, headers={"underscores": policy})
    status, _, _ = send(gw, "/open", [("X_Consumer", "root"), ("My_Header", "k")])
    assert status == 200
    names = [n for n, _ in up.requests[-1].raw_headers if "_" in n]
    assert sorted(names) == sorted(kept)
    # Whatever the policy, the dashed identity header itself never passes.
    send(gw, "/open", [("X-Consumer", "root")])
    assert "x-consumer" not in raw_names(up.requests[-1])


def test_underscore_policy_config_error(upstream, gateway):
    up = upstream()
    for bad in ("bogus", 1):
        code, out = gateway(base_config(
            upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
            routes=[{"name": "r", "paths": ["/"], "upstream": "u"}],
            headers={"underscores": bad}), expect_start_failure=True)
        assert code != 0 and "headers.underscores" in out, out
    code, out = gateway(base_config(
        upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
        routes=[{"name": "r", "paths": ["/"], "upstream": "u"}],
        headers={"underscore": "drop"}), expect_start_failure=True)
    assert code != 0 and "headers.underscore" in out, out


def test_forwarding_headers_replaced(upstream, gateway):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    status, _, _ = send(gw, "/open", [
        ("Forwarded", "for=10.9.9.9;proto=https"), ("forwarded", "for=10.8.8.8"),
        ("X-Real-IP", "10.9.9.9"), ("X-Forwarded-For", "10.9.9.9"),
        ("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https")])
    assert status == 200
    seen = up.requests[-1]
    assert values(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert values(seen, "x-real-ip") == ["127.0.0.1"]
    assert values(seen, "forwarded") == ["for=127.0.0.1;proto=http"]
    assert values(seen, "x-forwarded-proto") == ["http"]
    assert "x-forwarded-host" not in raw_names(seen)
    assert "x-forwarded-port" not in raw_names(seen)
    assert "10.9.9.9" not in " ".join(v for _, v in seen.raw_headers)


def test_forwarded_ipv6_client(upstream, gateway):
    up = upstream(name="svc")
    port = __import__("conftest").free_port()
    cfg = base_config(upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
                      routes=[{"name": "open", "paths": ["/"], "upstream": "svc"}])
    cfg["listeners"][0]["address"] = "[::1]:%d" % port
    gw = gateway(cfg)
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(b"GET /v6 HTTP/1.1\r\nHost: gw.test\r\nX-Real-IP: 1.1.1.1\r\n"
                  b"Connection: close\r\n\r\n")
        while s.recv(65536):
            pass
    seen = up.requests[-1]
    assert values(seen, "forwarded") == ['for="[::1]";proto=http']
    assert values(seen, "x-real-ip") == ["::1"]


ID_CHARS = "AZaz09._:-"


@pytest.mark.parametrize("rid", ["a", "req-42", "A.b_c:d-9",
                                 (ID_CHARS * 13)[:128]])
def test_valid_request_id_kept(upstream, gateway, rid):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    status, headers, _ = send(gw, "/open", [("X-Request-Id", rid)])
    assert status == 200
    assert values(up.requests[-1], "x-request-id") == [rid]
    assert headers["x-request-id"] == rid
    # Errors made by the gateway carry it too.
    status, headers, body = send(gw, "/key", [("X-Request-Id", rid)])
    assert status == 401 and headers["x-request-id"] == rid
    assert json.loads(body)["request_id"] == rid


@pytest.mark.parametrize("rid", [(ID_CHARS * 13)[:129], "has space", "a/b", "a+b", "é",
                                 "x\"y", "a,b"])
def test_invalid_request_id_replaced(upstream, gateway, rid):
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    status, headers, _ = send(gw, "/open", [("X-Request-Id", rid)])
    assert status == 200
    got = values(up.requests[-1], "x-request-id")
    assert len(got) == 1 and got[0] != rid and 1 <= len(got[0]) <= 128
    assert headers["x-request-id"] == got[0]


# ---- class 8: upgrades ---------------------------------------------------------------------

class UpgradeUpstream:
    """Raw upstream: records each request head; answers `reply(head)` bytes, then echoes
    whatever follows (a tunnel) until the peer closes."""

    def __init__(self, reply):
        import threading
        self.reply = reply
        self.heads = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                head, _, rest = data.partition(b"\r\n\r\n")
                self.heads.append(head.decode("latin-1"))
                conn.sendall(self.reply(head.decode("latin-1")))
                if rest:
                    conn.sendall(rest)
                while True:
                    got = conn.recv(65536)
                    if not got:
                        return
                    conn.sendall(got)
            except OSError:
                return

    def stop(self):
        self.sock.close()


def ws_101(head):
    if "upgrade: websocket" in head.lower():
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"


@pytest.fixture
def upgrade_up():
    servers = []

    def make(reply=ws_101):
        s = UpgradeUpstream(reply)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def upgrade_gw(gateway, up):
    return gateway(base_config(
        upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
        routes=[{"name": "ws", "paths": ["/ws"], "upstream": "u", "websocket": True},
                {"name": "plain", "paths": ["/"], "upstream": "u"}]))


def head_lines(head):
    return [l.lower() for l in head.split("\r\n")[1:]]


def test_websocket_upgrade_on_websocket_route(upgrade_up, gateway):
    up = upgrade_up()
    gw = upgrade_gw(gateway, up)
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        s.sendall(b"GET /ws/chat HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\n"
                  b"Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 101")
        s.sendall(b"tunnel-bytes")
        echoed = b""
        while len(echoed) < 12:
            echoed += s.recv(65536)
        assert echoed == b"tunnel-bytes"
    lines = head_lines(up.heads[-1])
    assert "upgrade: websocket" in lines and "connection: upgrade" in lines


@pytest.mark.parametrize("path,upgrade,extra", [
    ("/ws", "h2c", "HTTP2-Settings: AAMAAABkAAQAAP__\r\n"),
    ("/", "h2c", "HTTP2-Settings: AAMAAABkAAQAAP__\r\n"),
    ("/", "websocket", "Sec-WebSocket-Version: 13\r\n"),
    ("/ws", "TLS/1.0", ""),
    ("/ws", "websocket, h2c", ""),
    ("/ws", "foo", ""),
    ("/ws", "h2c", ""),
])
def test_other_upgrades_ignored(upgrade_up, gateway, path, upgrade, extra):
    """The Upgrade is dropped: the upstream sees a plain request and answers it."""
    up = upgrade_up()
    gw = upgrade_gw(gateway, up)
    status, _, body = exchange(gw.port(), (
        "GET %s HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "Upgrade: %s\r\n%s\r\n" % (path, upgrade, extra)).encode())
    assert status == 200 and body == b"plain"
    lines = head_lines(up.heads[-1])
    assert not [l for l in lines if l.startswith(("upgrade:", "http2-settings:"))], lines
    assert "connection: keep-alive" in lines


@pytest.mark.parametrize("head", [
    "POST /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Content-Length: 0\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Content-Length: 3\r\n\r\nabc",
    "GET /ws HTTP/1.0\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
])
def test_websocket_upgrade_needs_a_bodiless_get(upgrade_up, gateway, head):
    up = upgrade_up()
    gw = upgrade_gw(gateway, up)
    status, _, body = exchange(gw.port(), head.encode())
    assert status == 200 and body == b"plain"
    assert not [l for l in head_lines(up.heads[-1]) if l.startswith("upgrade:")]


def test_http2_settings_without_connection_token_dropped(upgrade_up, gateway):
    up = upgrade_up()
    gw = upgrade_gw(gateway, up)
    status, _, _ = exchange(gw.port(), b"GET / HTTP/1.1\r\nHost: gw.test\r\n"
                                       b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    assert status == 200
    assert not [l for l in head_lines(up.heads[-1]) if l.startswith("http2-settings:")]


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
])
def test_upstream_switching_to_another_protocol_is_502(upgrade_up, gateway, reply):
    up = upgrade_up(lambda head: reply)
    gw = upgrade_gw(gateway, up)
    status, _, _ = exchange(gw.port(), b"GET /ws HTTP/1.1\r\nHost: gw.test\r\n"
                                       b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert status == 502
    # And a 101 to a request whose upgrade was ignored.
    status, _, _ = exchange(gw.port(), b"GET / HTTP/1.1\r\nHost: gw.test\r\n"
                                       b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    assert status == 502


def test_websocket_route_config_error(upstream, gateway):
    up = upstream()
    code, out = gateway(base_config(
        upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
        routes=[{"name": "r", "paths": ["/"], "upstream": "u", "websocket": "yes"}]),
        expect_start_failure=True)
    assert code != 0 and "routes[0].websocket" in out, out


class RawBodyUpstream:
    """Raw upstream that keeps the exact chunked framing it receives: (size lines, payload,
    trailer lines) per request; answers 200 "ok" and keeps the connection."""

    def __init__(self):
        import threading
        self.bodies = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = [b""]

        def line():
            while b"\r\n" not in buf[0]:
                got = conn.recv(65536)
                if not got:
                    raise EOFError
                buf[0] += got
            out, _, buf[0] = buf[0].partition(b"\r\n")
            return out

        def take(n):
            while len(buf[0]) < n:
                got = conn.recv(65536)
                if not got:
                    raise EOFError
                buf[0] += got
            out, buf[0] = buf[0][:n], buf[0][n:]
            return out

        with conn:
            try:
                while True:
                    while line() != b"":
                        pass  # the head
                    sizes, payload, trailers = [], b"", []
                    while True:
                        size_line = line()
                        sizes.append(size_line.decode("latin-1"))
                        size = int(size_line.split(b";")[0], 16)
                        if size == 0:
                            break
                        payload += take(size)
                        assert take(2) == b"\r\n"
                    while True:
                        t = line()
                        if t == b"":
                            break
                        trailers.append(t.decode("latin-1"))
                    self.bodies.append((sizes, payload, trailers))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (EOFError, OSError, ValueError):
                return

    def stop(self):
        self.sock.close()


def test_chunked_request_reframed(gateway):
    """The upstream gets chunks framed by the gateway: plain lower-case hex sizes, no
    extensions, no leading zeros; the payload and allowed trailers unchanged."""
    up = RawBodyUpstream()
    try:
        gw = gateway(base_config(
            upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
            routes=[{"name": "r", "paths": ["/"], "upstream": "u"}]))
        body = (b"5;ext=\"a;b\"\r\nhello\r\nA\r\n0123456789\r\n0005 ; x=y\r\nworld\r\n"
                b"1;a;b;c\r\n!\r\n0;last=1\r\nDigest: md5=x\r\nX-Consumer: root\r\n\r\n")
        status, _, resp = exchange(gw.port(), b"POST /c HTTP/1.1\r\nHost: gw.test\r\n"
                                              b"Transfer-Encoding: chunked\r\n\r\n" + body)
        assert status == 200 and resp == b"ok"
        sizes, payload, trailers = up.bodies[-1]
        assert payload == b"hello0123456789world!"
        assert sizes[-1] == "0"
        for s in sizes:
            assert s == "%x" % int(s, 16) and ";" not in s and " " not in s, sizes
        assert trailers == ["Digest: md5=x"]
        # A large body in pieces: every byte arrives, framing stays the gateway's.
        big = bytes(range(256)) * 1024
        chunks = b"".join(b"%X;n=%d\r\n%s\r\n" % (len(big[i:i + 5000]), i, big[i:i + 5000])
                          for i in range(0, len(big), 5000))
        status, _, _ = exchange(gw.port(), b"POST /big HTTP/1.1\r\nHost: gw.test\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n" + chunks +
                                           b"0\r\n\r\n", timeout=10)
        assert status == 200
        sizes, payload, trailers = up.bodies[-1]
        assert payload == big and trailers == []
        assert all(";" not in s for s in sizes)
    finally:
        up.stop()


# ---- request-line overrides --------------------------------------------------------------

def test_path_and_method_overrides_dropped(upstream, gateway):
    """X-Original-URL / X-Rewrite-URL would make some frameworks serve another path than
    the one routed (and authenticated); method overrides another method than the route
    allows. Dropped: path overrides always, method overrides on routes with `methods`."""
    up = upstream(name="svc")
    gw = gateway(base_config(
        upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
        routes=[{"name": "ro", "paths": ["/items"], "upstream": "svc", "methods": ["GET"]},
                {"name": "open", "paths": ["/"], "upstream": "svc"}]))
    overrides = [("X-Original-URL", "/admin"), ("X-Rewrite-URL", "/admin"),
                 ("X_Original_URL", "/admin"), ("X-HTTP-Method-Override", "DELETE"),
                 ("X-HTTP-Method", "DELETE"), ("X-Method-Override", "DELETE"),
                 ("X_HTTP_Method_Override", "DELETE")]
    status, _, _ = send(gw, "/items/1", overrides)
    assert status == 200
    names = raw_names(up.requests[-1])
    for n, _ in overrides:
        assert n.lower() not in names, (n, names)
    # A route without a method restriction: method overrides are the upstream's business,
    # path overrides still go.
    status, _, _ = send(gw, "/other", overrides)
    assert status == 200
    names = raw_names(up.requests[-1])
    assert "x-original-url" not in names and "x-rewrite-url" not in names
    assert "x_original_url" not in names
    assert values(up.requests[-1], "x-http-method-override") == ["DELETE"]
    assert values(up.requests[-1], "x-method-override") == ["DELETE"]
