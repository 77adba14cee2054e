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


def test_trailers_each_split_and_keepalive(upstream, gateway):
    """The trailer section arrives byte by byte; the connection then serves another
    request (the filtered section ended the body exactly)."""
    up = upstream(name="svc")
    gw = gw_with_key(gateway, up)
    req = chunked_request("/open", [("X-Consumer", "root"), ("Digest", "md5=x")])
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
        s.sendall(b"GET /after HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            data += s.recv(65536)
    assert data.count(b"HTTP/1.1 200") == 2
    assert up.requests[0].trailers == [("Digest", "md5=x")]
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
