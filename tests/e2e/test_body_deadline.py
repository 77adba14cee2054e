"""The request body has a deadline, not only a per-read idle timeout (issue 10, class 5):
limits.body_timeout_ms from the first wait, extended by a second per limits.body_min_rate
bytes received. A client dribbling its body gets 408; an upload at a fair rate and one held
back by a slow upstream are never cut."""
import socket
import threading
import time

import pytest

from conftest import base_config, parse_responses, run_check, scaled


def gateway_for(gateway, upstream_address, **limits):
    ups = [{"name": "u", "targets": [{"address": upstream_address}]}]
    routes = [{"name": "r", "paths": ["/"], "upstream": "u"}]
    limits.setdefault("idle_timeout_ms", 30000)
    return gateway(base_config(upstreams=ups, routes=routes, limits=limits))


def read_until_close(sock, timeout):
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                break
            chunks.append(got)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks)


def dribble(gw, head, piece, count, pause_s):
    """Sends head, then `piece` count times pause_s apart, stopping when the gateway
    answers; returns (responses, seconds from the head to the answer)."""
    sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=10)
    sock.sendall(head)
    start = time.monotonic()
    sock.settimeout(pause_s)
    got = b""
    for _ in range(count):
        try:
            sock.sendall(piece)
        except OSError:
            break
        try:
            got = sock.recv(65536)
        except socket.timeout:
            continue
        break
    elapsed = time.monotonic() - start
    got += read_until_close(sock, scaled(5))
    sock.close()
    return parse_responses(got), elapsed


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_dribbled_body_gets_408(upstream, gateway, framing):
    up = upstream(name="u")
    gw = gateway_for(gateway, up.address, body_timeout_ms=1000, body_min_rate=1024)
    if framing == "length":
        head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        piece = b"a"
    else:
        head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        piece = b"1\r\na\r\n"
    # 1 byte per 150 ms: far inside the 30 s idle timeout, far below 1 KiB/s.
    responses, elapsed = dribble(gw, head, piece, count=200, pause_s=0.15)
    assert responses and responses[0][0] == 408, responses
    assert b"request body timeout" in responses[0][2]
    assert 0.9 <= elapsed <= scaled(3.5), elapsed
    # The upstream never saw a complete request.
    time.sleep(0.2)
    assert all(r.body_len < 1000 for r in up.requests), up.requests


def test_upload_at_a_fair_rate_is_not_cut(upstream, gateway):
    """2 s upload at 128 KiB/s with a 0.5 s base deadline and 64 KiB/s minimum rate."""
    up = upstream(name="u")
    gw = gateway_for(gateway, up.address, body_timeout_ms=500, body_min_rate=64 * 1024,
                     max_body_bytes=1 << 20)
    total, piece = 256 * 1024, 16 * 1024
    sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=10)
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n" % total)
    start = time.monotonic()
    for _ in range(total // piece):
        sock.sendall(b"b" * piece)
        time.sleep(0.125)
    responses = parse_responses(read_until_close(sock, scaled(10)))
    sock.close()
    assert time.monotonic() - start >= 1.9  # longer than the base deadline several times
    assert responses and responses[0][0] == 200, responses
    assert up.requests and up.requests[-1].body_len == total


def test_time_the_gateway_does_not_read_does_not_count(gateway, free_port):
    """An upstream that reads the body only after 2 s: the gateway stops reading the client
    (backpressure); that time is not the client's fault and must not expire its body."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    total = 32 << 20
    seen = {}

    def slow_upstream():
        conn, _ = listener.accept()
        conn.settimeout(20)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1)
        time.sleep(2.0)
        got = 0
        while got < total:
            data = conn.recv(1 << 20)
            if not data:
                break
            got += len(data)
        seen["body"] = got
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()

    thread = threading.Thread(target=slow_upstream, daemon=True)
    thread.start()
    try:
        gw = gateway_for(gateway, "127.0.0.1:%d" % port, body_timeout_ms=500,
                         body_min_rate=1 << 30, max_body_bytes=1 << 30)
        sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=20)
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % total)
        block = b"c" * (1 << 20)
        for _ in range(total // len(block)):
            sock.sendall(block)
        responses = parse_responses(read_until_close(sock, scaled(20)))
        sock.close()
        thread.join(scaled(20))
    finally:
        listener.close()
    assert seen.get("body") == total, seen
    assert responses and responses[0][0] == 200, responses


@pytest.mark.parametrize("limits, path", [
    ({"body_timeout_ms": 0}, "limits.body_timeout_ms"),
    ({"body_min_rate": -1}, "limits.body_min_rate"),
    ({"body_timeout_ms": "5s"}, "limits.body_timeout_ms"),
])
def test_body_deadline_config_errors(tmp_path, limits, path):
    code, out = run_check(base_config(limits=limits), tmp_path)
    assert code != 0 and path in out, out
