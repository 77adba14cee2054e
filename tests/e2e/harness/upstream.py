"""Threaded HTTP/1.1 test upstream with keep-alive, streaming bodies and fault modes.

The server is deliberately independent of http.server: tests need exact control over
framing (chunked vs Content-Length, silent closes, verbatim malformed responses) and must
be able to receive and send bodies far larger than memory should hold.
"""
import hashlib
import json
import socket
import threading
import time
from urllib.parse import unquote

from .net import free_port
from .timing import scaled

MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
NO_BODY_STATUSES = (204, 304)
REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class BadRequest(Exception):
    """The peer sent something this server refuses to parse."""


class Request:
    """One request as the upstream saw it."""

    def __init__(self):
        self.method = ""
        self.target = ""  # raw request-target as received
        self.path = ""
        self.query = ""
        self.version = ""
        self.raw_headers = []  # [(name as sent, value)]
        self.headers = {}  # lower-case name -> value (repeats joined with ", ")
        self.body = b""  # kept whole only up to Upstream.keep_body_max
        self.body_len = 0
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.chunked = False
        self.trailers = []
        self.conn_id = 0  # which accepted connection carried it (1-based)
        self.peer = None  # (ip, port) of the connecting gateway socket
        self.time = 0.0

    def __repr__(self):
        return "<Request %s %s len=%d conn=%d>" % (self.method, self.target, self.body_len,
                                                  self.conn_id)


class _Reader:
    """Buffered reader over a socket that can hand back unconsumed bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise EOFError
        self.buf += data

    def read_until(self, marker, limit):
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                out = self.buf[:idx + len(marker)]
                self.buf = self.buf[idx + len(marker):]
                return out
            if len(self.buf) > limit:
                raise BadRequest("head too large")
            self._fill()

    def read_some(self, maximum):
        if not self.buf:
            self._fill()
        out = self.buf[:maximum]
        self.buf = self.buf[maximum:]
        return out

    def read_line(self):
        return self.read_until(b"\r\n", MAX_HEAD_BYTES)[:-2]


def _parse_head(head):
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("bad request line %r" % lines[0])
    req = Request()
    req.method, req.target, req.version = (p.decode("latin-1") for p in parts)
    path, _, query = req.target.partition("?")
    req.path, req.query = path, query
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest("bad header line %r" % line)
        name_s = name.decode("latin-1")
        value_s = value.strip(b" \t").decode("latin-1")
        req.raw_headers.append((name_s, value_s))
        low = name_s.lower()
        req.headers[low] = value_s if low not in req.headers else req.headers[low] + ", " + value_s
    return req


class Upstream:
    """A test upstream server on 127.0.0.1 (see tests/e2e/harness/README.md)."""

    def __init__(self, name="upstream", status=200, body=None, delay_s=0.0, handler=None,
                 close_after=None, close_silently=False, raw_response=None, healthy=True,
                 headers=None, keep_body_max=1 << 20, expect_continue=True, port=None,
                 host="127.0.0.1", health_path="/health", record_health=False):
        self.name = name
        self.status = status
        self.body = body
        self.delay_s = delay_s
        self.handler = handler
        self.close_after = close_after
        self.close_silently = close_silently
        self.raw_response = raw_response
        self.healthy = healthy
        self.extra_headers = dict(headers or {})
        self.keep_body_max = keep_body_max
        self.expect_continue = expect_continue
        self.health_path = health_path
        self.record_health = record_health
        self.host = host
        self.requests = []
        self.health_requests = 0
        self.connections = 0
        self.active_connections = 0
        self.errors = []  # parse errors / handler exceptions, for debugging
        self._lock = threading.Lock()
        self._conns = set()
        self._threads = []
        self._stopping = False
        self._sock = self._listen(host, port)
        self.port = self._sock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="upstream-%s" % name)
        self._acceptor.start()

    @staticmethod
    def _listen(host, port):
        last = None
        for _ in range(20):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port if port else free_port()))
            except OSError as exc:
                sock.close()
                last = exc
                if port:
                    break
                continue
            sock.listen(1024)
            return sock
        raise last

    # -- public API -----------------------------------------------------------------

    def url(self, path="/"):
        return "http://%s%s" % (self.address, path)

    def reset(self):
        with self._lock:
            self.requests = []
            self.health_requests = 0
            self.connections = 0

    def wait_requests(self, count, timeout=5.0):
        """Waits until at least count requests were recorded; returns the list."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return list(self.requests)
            time.sleep(0.01)
        raise AssertionError("upstream %s: %d requests after %.1fs, wanted %d" %
                             (self.name, len(self.requests), timeout, count))

    def stop(self):
        if self._stopping:
            return
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        self._acceptor.join(5)
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- server ---------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.active_connections += 1
                conn_id = self.connections
                self._conns.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn, peer, conn_id), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn, peer, conn_id):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(conn)
        served = 0
        try:
            while not self._stopping:
                try:
                    head = reader.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
                except EOFError:
                    return
                req = _parse_head(head)
                req.conn_id, req.peer, req.time = conn_id, peer, time.time()
                if self.raw_response is not None:
                    self._read_body(conn, reader, req)
                    self._record(req)
                    raw = self.raw_response
                    conn.sendall(raw(req) if callable(raw) else raw)
                    return
                self._read_body(conn, reader, req)
                served += 1
                last = self.close_after is not None and served >= self.close_after
                keep = self._respond(conn, req, last)
                if last or not keep:
                    return
        except (BadRequest, ValueError) as exc:
            self.errors.append(repr(exc))
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            except OSError:
                pass
        except (OSError, EOFError) as exc:
            if not self._stopping:
                self.errors.append(repr(exc))
        except Exception as exc:  # a test's handler failed: make it visible, not silent
            self.errors.append("handler: %r" % exc)
            try:
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            except OSError:
                pass
        finally:
            with self._lock:
                self._conns.discard(conn)
                self.active_connections -= 1
            conn.close()

    def _record(self, req):
        if req.path == self.health_path and self.health_path and not self.record_health:
            with self._lock:
                self.health_requests += 1
            return
        with self._lock:
            self.requests.append(req)

    def _read_body(self, conn, reader, req):
        te = req.headers.get("transfer-encoding")
        cl = req.headers.get("content-length")
        digest = hashlib.sha256()
        kept = []
        kept_len = 0

        def take(data):
            nonlocal kept_len
            digest.update(data)
            req.body_len += len(data)
            if kept_len < self.keep_body_max:
                kept.append(data[:self.keep_body_max - kept_len])
                kept_len += len(kept[-1])

        expects_body = te is not None or (cl is not None and cl.strip() != "0")
        if (self.expect_continue and expects_body
                and req.headers.get("expect", "").lower() == "100-continue"):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if te is not None:
            if te.lower() != "chunked":
                raise BadRequest("unsupported transfer-encoding %r" % te)
            req.chunked = True
            self._read_chunked(reader, req, take)
        elif cl is not None:
            if not cl.strip().isdigit():
                raise BadRequest("bad content-length %r" % cl)
            remaining = int(cl)
            while remaining > 0:
                data = reader.read_some(min(remaining, READ_SIZE))
                remaining -= len(data)
                take(data)
        req.body = b"".join(kept)
        req.body_sha256 = digest.hexdigest()

    @staticmethod
    def _read_chunked(reader, req, take):
        while True:
            line = reader.read_line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size %r" % line) from None
            if size == 0:
                break
            while size > 0:
                data = reader.read_some(min(size, READ_SIZE))
                size -= len(data)
                take(data)
            if reader.read_line() != b"":
                raise BadRequest("missing CRLF after chunk")
        while True:
            line = reader.read_line()
            if line == b"":
                return
            name, _, value = line.partition(b":")
            req.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))

    def _default_body(self, req):
        return json.dumps({
            "upstream": self.name, "method": req.method, "path": req.path,
            "query": req.query, "headers": req.headers, "body_len": req.body_len,
            "body_sha256": req.body_sha256,
        }).encode()

    def _produce(self, req):
        """Returns (status, headers, body) where body is bytes or an iterable of bytes."""
        if self.health_path and req.path == self.health_path:
            if self.healthy:
                return 200, {"Content-Type": "text/plain"}, b"ok\n"
            return 503, {"Content-Type": "text/plain"}, b"unhealthy\n"
        if self.handler is not None:
            result = self.handler(req)
            if isinstance(result, (bytes, bytearray)):
                return 200, {}, bytes(result)
            if len(result) == 2:
                return result[0], {}, result[1]
            return result
        if self.body is not None:
            return self.status, {}, self.body
        return self.status, {"Content-Type": "application/json"}, self._default_body(req)

    def _respond(self, conn, req, last):
        """Writes one response; returns whether the connection may be kept."""
        self._record(req)
        if self.delay_s:
            time.sleep(self.delay_s)
        status, headers, body = self._produce(req)
        headers = dict(headers or {})
        for name, value in self.extra_headers.items():
            headers.setdefault(name, value)
        lower = {k.lower() for k in headers}
        headers.setdefault("X-Upstream", self.name)
        client_close = (req.headers.get("connection", "").lower() == "close"
                        or req.version == "HTTP/1.0")
        handler_close = any(k.lower() == "connection" and v.lower() == "close"
                            for k, v in headers.items())
        keep = not (client_close or handler_close or last)
        if (last and not self.close_silently) or client_close:
            headers["Connection"] = "close"
        no_body = req.method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200
        streamed = not isinstance(body, (bytes, bytearray))
        if streamed and "content-length" not in lower and status not in NO_BODY_STATUSES:
            headers["Transfer-Encoding"] = "chunked"
        elif not streamed and "content-length" not in lower and status not in NO_BODY_STATUSES:
            headers["Content-Length"] = str(len(body))
        head = "HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))
        head += "".join("%s: %s\r\n" % (k, v) for k, v in headers.items()) + "\r\n"
        conn.sendall(head.encode("latin-1"))
        if no_body:
            return keep
        if not streamed:
            conn.sendall(body)
        elif headers.get("Transfer-Encoding") == "chunked":
            for piece in body:
                if piece:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
        else:
            for piece in body:
                conn.sendall(piece)
        return keep


def pattern_stream(total, seed=b"xgate", piece_size=256 * 1024):
    """Deterministic pseudo-random bytes of length total, as an iterator of pieces.

    The same (total, seed) always yields the same bytes, so tests can compute the
    expected SHA-256 with pattern_sha256() without holding the data.
    """
    block = hashlib.sha256(seed).digest() * (piece_size // 32)
    sent = 0
    counter = 0
    while sent < total:
        n = min(piece_size, total - sent)
        # Vary each piece so that reordering or duplication of pieces changes the hash.
        prefix = counter.to_bytes(8, "big")
        piece = (prefix + block)[:n]
        yield piece
        sent += n
        counter += 1


def pattern_sha256(total, seed=b"xgate", piece_size=256 * 1024):
    digest = hashlib.sha256()
    for piece in pattern_stream(total, seed, piece_size):
        digest.update(piece)
    return digest.hexdigest()
