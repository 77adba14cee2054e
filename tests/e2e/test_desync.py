"""Upstream connection reuse desync (issue 10, class 1): bytes an upstream sends after a
complete response (a body to HEAD, bytes after 204/304, more than Content-Length, a late
segment while the connection idles in the pool) never reach the next request on that
connection. The connection is closed and counted as outcome="protocol_error"."""
import re
import socket
import threading
import time

import pytest

from conftest import base_config, http_request

SMUGGLED = (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nSMUGGLED")


class ScriptedUpstream:
    """A raw-socket keep-alive upstream: for each request head read, `script(method,
    path)` returns [(delay_s, bytes), ...] written in order; the connection stays open.
    Records (connection id, method, path) of every request."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.requests = []
        self.connections = 0
        self.stopping = False
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.done_paths = []  # paths whose script was written out completely
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, cid), daemon=True).start()

    def _serve(self, conn, cid):
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                head, _, data = data.partition(b"\r\n\r\n")
                method, path = head.split(b"\r\n")[0].decode().split(" ")[:2]
                with self.lock:
                    self.requests.append((cid, method, path))
                for delay, chunk in self.script(method, path):
                    if delay:
                        time.sleep(delay)
                    conn.sendall(chunk)
                with self.done:
                    self.done_paths.append(path)
                    self.done.notify_all()
        except OSError:
            return
        finally:
            conn.close()

    def wait_written(self, path, timeout=10):
        """Waits until every byte the script has for `path` was sent: late bytes are then
        in the gateway's socket, whatever the machine's load."""
        with self.done:
            assert self.done.wait_for(lambda: path in self.done_paths, timeout), path

    def stop(self):
        self.stopping = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def real(path):
    body = ("real:" + path).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def script(method, path):
    """/head-body: HEAD answered with a body; /204 and /304 followed by bytes; /over: more
    than Content-Length; /late: a complete response, then a smuggled one 150 ms later;
    /late-head: a HEAD response whose body arrives 150 ms later; /close-idle: a response,
    then FIN while idle; anything else: a correct response."""
    if path == "/head-body":
        return [(0, b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + SMUGGLED)]
    if path == "/204":
        return [(0, b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED)]
    if path == "/304":
        return [(0, b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n" + SMUGGLED)]
    if path == "/over":
        return [(0, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + SMUGGLED)]
    if path == "/chunked-over":
        return [(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nok\r\n0\r\n\r\n" + SMUGGLED)]
    if path == "/chunked-late":
        return [(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nok\r\n0\r\n\r\n"), (0.15, SMUGGLED)]
    if path == "/head-chunked":
        return [(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nok\r\n0\r\n\r\n")]
    if path == "/100-then":
        return [(0, b"HTTP/1.1 100 Continue\r\n\r\n" + real(path) + SMUGGLED)]
    if path == "/late":
        return [(0, real(path)), (0.15, SMUGGLED)]
    if path == "/late-head":
        return [(0, b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"), (0.15, SMUGGLED)]
    if path == "/split":
        # The smuggled bytes arrive in a separate segment right behind the response.
        return [(0, real(path)), (0.01, SMUGGLED)]
    return [(0, real(path))]


@pytest.fixture
def scripted():
    servers = []

    def make(fn=script):
        s = ScriptedUpstream(fn)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def protocol_errors(gw, up):
    text = http_request("GET", gw.admin_url + "/metrics").body.decode()
    m = re.search(r'xgate_upstream_requests_total\{upstream="u",target="%s",'
                  r'outcome="protocol_error"\} (\d+)' % re.escape(up.address), text)
    return int(m.group(1)) if m else 0


def make_gateway(gateway, up, **kw):
    cfg = base_config(upstreams=[{"name": "u", "targets": [{"address": up.address}],
                                  "keepalive": 8}],
                      routes=[{"name": "r", "paths": ["/"], "upstream": "u"}], **kw)
    return gateway(cfg)


def victim(gw, path="/victim"):
    """A different client's request, which must get its own response."""
    r = http_request("GET", gw.url(path))
    assert r.status == 200, r
    assert r.body == ("real:" + path).encode(), r.body
    assert "x-smuggled" not in r.headers
    return r


@pytest.mark.parametrize("method,path", [
    ("HEAD", "/head-body"), ("GET", "/204"), ("GET", "/304"), ("GET", "/over"),
    ("GET", "/late"), ("GET", "/split"), ("HEAD", "/late-head"), ("GET", "/chunked-over"),
    ("GET", "/chunked-late"), ("HEAD", "/head-chunked"), ("GET", "/100-then"),
])
def test_bytes_after_response_never_reach_next_request(scripted, gateway, method, path):
    up = scripted()
    gw = make_gateway(gateway, up)
    victim(gw, "/warm")
    r = http_request(method, gw.url(path))
    if path in ("/204", "/304"):
        assert r.status == int(path[1:])
    else:
        assert r.status == 200
    assert r.body in (b"", b"ok", ("real:" + path).encode())
    assert b"SMUGGLED" not in r.body
    up.wait_written(path)  # late bytes have arrived while the connection idles in the pool
    time.sleep(0.05)  # usually the idle poll closes it now; else the check at take does
    for i in range(3):
        victim(gw, "/victim%d" % i)
    # The poisoned connection was closed: the victims ran on another one.
    conn_of = {p: cid for cid, _, p in up.requests}
    assert conn_of["/victim0"] != conn_of[path]
    assert protocol_errors(gw, up) == 1


def test_many_poisoned_exchanges_each_counted(scripted, gateway):
    up = scripted()
    gw = make_gateway(gateway, up)
    for path in ("/over", "/204", "/late", "/over"):
        http_request("GET", gw.url(path))
        up.wait_written(path)
        victim(gw)
    assert protocol_errors(gw, up) == 4
    # The clean exchanges reuse connections and are not counted.
    before = up.connections
    for i in range(5):
        victim(gw, "/clean%d" % i)
    assert up.connections == before
    assert protocol_errors(gw, up) == 4


def test_pipelined_victim_on_same_client_connection(scripted, gateway):
    """The same client pipelines a request behind one whose response carries extra bytes."""
    up = scripted()
    gw = make_gateway(gateway, up)
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        s.sendall(b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
            got = s.recv(65536)
            if not got:
                break
            data += got
            time.sleep(0.05)
    assert b"SMUGGLED" not in data
    assert b"real:/victim" in data


def test_idle_eof_is_not_a_protocol_error(scripted, gateway):
    """An upstream that closes an idle keep-alive connection is normal: the next request
    opens a new connection, and nothing is counted as a protocol error."""
    def closing(method, path):
        return [(0, real(path))]

    up = scripted(closing)
    gw = make_gateway(gateway, up)
    victim(gw, "/a")
    with up.lock:
        for c in up.conns:
            c.shutdown(socket.SHUT_RDWR)
    time.sleep(0.2)
    victim(gw, "/b")
    assert up.connections == 2
    assert protocol_errors(gw, up) == 0
