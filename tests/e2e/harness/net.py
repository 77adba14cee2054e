"""Small socket helpers: free ports, raw HTTP exchanges, a tolerant HTTP client."""
import http.client
import random
import socket
import threading
import time
from urllib.parse import urlsplit

from .timing import scaled

# Ports are picked below the kernel's ephemeral range (32768+) so an outgoing connection
# made by any process cannot grab a port between our check and the gateway's bind.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_handed_out = set()
_port_lock = threading.Lock()


def _bindable(port):
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def free_port():
    """A TCP port that is free on every local address and not handed out before."""
    rng = random.Random()
    with _port_lock:
        for _ in range(1000):
            port = rng.randrange(_PORT_LOW, _PORT_HIGH)
            if port in _handed_out or not _bindable(port):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_port(port, host="127.0.0.1", timeout=10.0, alive=None):
    """Waits until host:port accepts; alive() returning False aborts early."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def http_raw(port, data, timeout=5, host="127.0.0.1", shutdown_write=False):
    """Sends data verbatim and returns every byte received until close or timeout.

    The timeout is for the whole exchange, so a gateway that keeps the connection open
    after answering costs the test at most `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    chunks = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            # The peer may answer (400) and close before reading everything we send.
            pass
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data_in = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not data_in:
                break
            chunks.append(data_in)
    return b"".join(chunks)


def parse_responses(raw):
    """Splits raw bytes into [(status, headers dict lower-case, body)] (CL/chunked/none)."""
    out = []
    while raw:
        head_end = raw.find(b"\r\n\r\n")
        if head_end < 0:
            break
        lines = raw[:head_end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = raw[head_end + 4:]
        if 100 <= status < 200 or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, rest = rest[:n], rest[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                line_end = rest.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(rest[:line_end].split(b";")[0], 16)
                rest = rest[line_end + 2:]
                if size == 0:
                    trailer_end = rest.find(b"\r\n\r\n") if not rest.startswith(b"\r\n") else 0
                    rest = rest[trailer_end + (2 if trailer_end == 0 else 4):]
                    break
                body += rest[:size]
                rest = rest[size + 2:]
        else:
            body, rest = rest, b""
        out.append((status, headers, body))
        raw = rest
    return out


class Response:
    def __init__(self, status, headers, body, raw_headers):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.raw_headers = raw_headers
        self.body = body

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def http_request(method, url, body=None, headers=None, timeout=10):
    """One request on a fresh connection; never raises for HTTP error statuses."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                           context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        raw = resp.getheaders()
        return Response(resp.status, {k.lower(): v for k, v in raw}, data, raw)
    finally:
        conn.close()
