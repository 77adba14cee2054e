"""L4 (mode tcp) listener: 200 MB each way with SHA-256 equality, half-close in both
directions, and a receiver that stops reading keeps gateway and kernel memory bounded."""
import hashlib
import socket
import threading
import time
import urllib.request

import pytest

from conftest import pattern_sha256, pattern_stream, scaled

TOTAL = 200 * 1000 * 1000


class SinkEchoServer:
    """Per connection: hash everything received; send `send_total` pattern bytes, then
    shut down writing (optionally before reading anything: server-first half-close)."""

    def __init__(self, send_total=TOTAL, read=True):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.send_total, self.read = send_total, read
        self.results = []  # per finished connection, the gateway's readiness probe included
        self.conns = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        result = {"sha": None, "received": 0}

        def sender():
            # The harness's readiness probe connects and leaves at once: its broken pipe is
            # expected. A real flow that breaks fails on the client's byte count and digest.
            try:
                for piece in pattern_stream(self.send_total, seed=b"server"):
                    conn.sendall(piece)
                conn.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        if self.read:
            digest = hashlib.sha256()
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                digest.update(data)
                result["received"] += len(data)
            result["sha"] = digest.hexdigest()
        t.join(scaled(120))
        self.results.append(result)

    def wait_result(self, expected_bytes, timeout=10):
        """The result of the connection that received the most (the readiness probe of
        the gateway harness also connects, and receives nothing)."""
        deadline = time.time() + scaled(timeout)
        while time.time() < deadline:
            if any(r["received"] >= expected_bytes for r in self.results):
                break
            time.sleep(0.1)
        return max(self.results, key=lambda r: r["received"], default={"received": 0,
                                                                        "sha": None})

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def l4_config(base_config, server, splice, max_inflight=1 << 30):
    """A tcp-mode listener (index 1) to server. The in-flight bound is raised by default:
    these tests check the bytes of flows that stay spliced end to end; a flow past the
    bound is reset (test_stalled_receiver_memory_bounded)."""
    cfg = base_config(upstreams=[{"name": "raw", "targets": [{"address": "127.0.0.1:%d" %
                                                              server.port}]}],
                      limits={"splice_max_inflight_bytes": max_inflight})
    cfg["listeners"].append({"name": "l4", "address": "127.0.0.1:%d" % _free_port(),
                             "mode": "tcp", "upstream": "raw", "splice": splice})
    return cfg


def _free_port():
    from conftest import free_port
    return free_port()


def metric(gw, name):
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def client_transfer(port, total, shut_first=True):
    """Sends total pattern bytes, half-closes, reads to EOF; returns (sha, received).

    The client waits a moment before sending: the gateway only splices a socket whose
    receive queue is empty when it joins the sockhash (see splice_enrol in
    userspace/proxy/tunnel.c), so a client that sends before being accepted is relayed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(60))
    time.sleep(0.3)
    digest = hashlib.sha256()
    received = [0]

    def reader():
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            digest.update(data)
            received[0] += len(data)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    for piece in pattern_stream(total, seed=b"client"):
        sock.sendall(piece)
    sock.shutdown(socket.SHUT_WR)
    t.join(scaled(180))
    sock.close()
    return digest.hexdigest(), received[0]


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_200mb_each_way(gateway, base_config, splice):
    server = SinkEchoServer()
    try:
        gw = gateway(l4_config(base_config, server, splice))
        bytes_before = metric(gw, "xgate_splice_bytes_total")
        sha, received = client_transfer(gw.port(1), TOTAL)
        assert received == TOTAL
        assert sha == pattern_sha256(TOTAL, seed=b"server")
        result = server.wait_result(TOTAL)
        assert result["received"] == TOTAL
        assert result["sha"] == pattern_sha256(TOTAL, seed=b"client")
        # Both directions went through pipes, not through the gateway's buffers (the
        # harness's readiness probe may add a few spliced bytes of its own).
        spliced = metric(gw, "xgate_splice_bytes_total") - bytes_before
        if splice == "auto":
            assert spliced >= 2 * TOTAL - (1 << 20)
        else:
            assert spliced == 0
    finally:
        server.stop()


@pytest.mark.parametrize("splice", ["auto", "sockmap", "off"])
def test_half_close_server_first(gateway, base_config, splice):
    # The server sends 1 MB and half-closes before reading; the client keeps sending after
    # seeing EOF, and the server must still receive everything.
    server = SinkEchoServer(send_total=1 << 20)
    try:
        gw = gateway(l4_config(base_config, server, splice))
        sock = socket.create_connection(("127.0.0.1", gw.port(1)), timeout=scaled(30))
        got = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += data
        assert hashlib.sha256(got).hexdigest() == pattern_sha256(1 << 20, seed=b"server")
        for piece in pattern_stream(5 << 20, seed=b"client"):
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        assert server.wait_result(5 << 20)["sha"] == pattern_sha256(5 << 20, seed=b"client")
        sock.close()
    finally:
        server.stop()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_mem_pages():
    with open("/proc/net/sockstat") as fh:
        for line in fh:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1])
    return 0


@pytest.mark.parametrize("splice", ["auto", "sockmap", "off"])
def test_stalled_receiver_memory_bounded(gateway, base_config, splice):
    server = SinkEchoServer(send_total=0, read=False)  # accepts, never reads
    try:
        gw = gateway(l4_config(base_config, server, splice, max_inflight=4 << 20))
        rss_before, mem_before = rss_kib(gw.pid), tcp_mem_pages()
        sock = socket.create_connection(("127.0.0.1", gw.port(1)), timeout=5)
        sock.setblocking(False)
        chunk = b"x" * 65536
        sent, deadline = 0, time.time() + 8
        while time.time() < deadline and sent < 2 << 30:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except (ConnectionResetError, BrokenPipeError):
                # A sockmap flow past its in-flight bound is reset, never relayed; pipes
                # and the userspace relay have backpressure instead.
                assert splice == "sockmap", "splice=%s must not reset the flow" % splice
                break
        rss_growth = rss_kib(gw.pid) - rss_before
        kernel_growth_kib = (tcp_mem_pages() - mem_before) * 4
        print("splice=%s: client got %d MiB in before backpressure, gateway RSS +%d KiB, "
              "TCP memory +%d KiB" % (splice, sent >> 20, rss_growth, kernel_growth_kib))
        assert sent < 256 << 20, "no backpressure: the gateway absorbed %d MiB" % (sent >> 20)
        assert rss_growth < 64 << 10
        assert kernel_growth_kib < 128 << 10
        sock.close()
    finally:
        server.stop()


class SendThenCloseServer:
    """Per connection: sends `total` pattern bytes without reading, then closes the socket
    (an upstream that dies in the middle of a large response)."""

    def __init__(self, total):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.total = total
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        # A moment first: the gateway splices a socket only while its receive queue is
        # empty when it joins (see client_transfer).
        time.sleep(0.3)
        try:
            for piece in pattern_stream(self.total, seed=b"server"):
                conn.sendall(piece)
        except OSError:
            pass  # the harness's readiness probe leaves at once
        conn.close()

    def stop(self):
        self.sock.close()


def active_connections(gw, listener):
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('xgate_connections_active{') and
               'listener="%s"' % listener in line)


@pytest.mark.parametrize("splice", ["auto", "sockmap"])
def test_upstream_closes_mid_splice(gateway, base_config, splice):
    # The upstream sends 20 MB and closes while the flow is spliced: the client gets exactly
    # those bytes, then EOF (no loss, no hang), and the gateway forgets the connection.
    total = 20 << 20
    server = SendThenCloseServer(total)
    try:
        gw = gateway(l4_config(base_config, server, splice))
        bytes_before = metric(gw, "xgate_splice_bytes_total")
        flows_before = metric(gw, "xgate_splice_flows_total")
        sock = socket.create_connection(("127.0.0.1", gw.port(1)), timeout=scaled(30))
        digest, received = hashlib.sha256(), 0
        while True:
            data = sock.recv(1 << 20)  # a hang fails on the socket timeout
            if not data:
                break
            if not received:  # the gauge counts this flow (so its return to 0 means something)
                assert active_connections(gw, "l4") >= 1
            digest.update(data)
            received += len(data)
        assert received == total
        assert digest.hexdigest() == pattern_sha256(total, seed=b"server")
        assert metric(gw, "xgate_splice_flows_total") - flows_before >= 1
        if splice == "auto":  # pipe bytes; sockmap moves them without counting
            assert metric(gw, "xgate_splice_bytes_total") - bytes_before >= total - (1 << 20)
        sock.close()
        deadline = time.time() + scaled(10)
        while time.time() < deadline and (active_connections(gw, "l4") or
                                          metric(gw, "xgate_splice_flows_active")):
            time.sleep(0.1)
        assert active_connections(gw, "l4") == 0
        assert metric(gw, "xgate_splice_flows_active") == 0
    finally:
        server.stop()
