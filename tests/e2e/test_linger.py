"""Errors that reach the client (issue 10, class 4): after a gateway error the connection
is closed lingering — FIN first, then what the client still sends is read and discarded for
at most 5 s or 8 MiB — so a client in the middle of an upload reads the status instead of a
TCP reset."""
import socket
import threading
import time
import urllib.request

from conftest import base_config, parse_responses

MiB = 1 << 20


def open_connections(gw):
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("xgate_connections_active{"))


def upload_gateway(upstream, gateway):
    up = upstream(name="users")
    return gateway(base_config(upstreams=[up], routes=[{"name": "r", "paths": ["/"],
                                                         "upstream": "users"}],
                               limits={"max_body_bytes": 1000}))


def open_upload(gw, length):
    sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=10)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
    return sock


def read_all(sock, out):
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                return
            out.append(got)
    except OSError as e:
        out.append(e)


def test_413_reaches_a_client_still_uploading(upstream, gateway):
    gw = upload_gateway(upstream, gateway)
    for _ in range(5):
        sock = open_upload(gw, 4 * MiB)
        time.sleep(0.05)  # the 413 goes out while the body is still on its way
        sock.sendall(b"x" * (4 * MiB))  # a reset here would raise ConnectionResetError
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        read_all(sock, chunks)
        sock.close()
        assert not any(isinstance(c, Exception) for c in chunks), chunks
        responses = parse_responses(b"".join(chunks))
        assert responses and responses[0][0] == 413, chunks[:1]


def test_lingering_stops_after_8_mib(upstream, gateway):
    gw = upload_gateway(upstream, gateway)
    sock = open_upload(gw, 64 * MiB)
    chunks = []
    reader = threading.Thread(target=read_all, args=(sock, chunks), daemon=True)
    reader.start()
    sent = 0
    block = b"y" * (256 << 10)
    try:
        while sent < 64 * MiB:
            sent += sock.send(block)
    except OSError:
        pass
    reader.join(10)
    sock.close()
    # 8 MiB discarded plus what the two socket buffers hold, never the whole 64 MiB.
    assert 8 * MiB <= sent < 32 * MiB, sent
    body = b"".join(c for c in chunks if isinstance(c, bytes))
    assert parse_responses(body)[0][0] == 413


def test_lingering_stops_after_5_seconds(upstream, gateway):
    gw = upload_gateway(upstream, gateway)
    sock = open_upload(gw, 10 * MiB)
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head
    t0 = time.monotonic()
    closed_after = None
    while time.monotonic() - t0 < 10:
        try:
            sock.send(b"z" * 100)
        except OSError:
            closed_after = time.monotonic() - t0
            break
        time.sleep(0.1)
    sock.close()
    assert closed_after is not None, "the gateway kept lingering past 10 s"
    assert 4.0 <= closed_after <= 7.5, closed_after


def test_client_fin_ends_lingering_at_once(upstream, gateway):
    gw = upload_gateway(upstream, gateway)
    sock = open_upload(gw, 10 * MiB)
    assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    sock.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    sock.settimeout(3)
    assert sock.recv(65536) == b""  # the gateway's FIN came with the answer
    sock.close()
    assert time.monotonic() - t0 < 1.0
    # The gateway let the connection go: its gauge of open connections drops back.
    deadline = time.monotonic() + 3
    while open_connections(gw) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(gw) == 0
