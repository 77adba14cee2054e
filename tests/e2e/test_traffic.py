"""Traffic control on the filter pipeline: CORS (preflights answered by the gateway, exact
origins, headers on the gateway's own errors) and compression (gzip/br by Accept-Encoding,
streaming, cached responses encoded per request)."""
import gzip
import hashlib
import json
import random
import socket
import time
import zlib

import brotli

from conftest import base_config, free_port, http_raw, http_request

APP = "https://app.example"
API_KEY = "k-3f9a0c2e7b"


def cors_route(up, **cors):
    policy = {"origins": [APP], "methods": ["GET", "POST", "PUT"],
              "headers": ["Authorization", "X-Trace"], "expose": ["X-Total"],
              "max_age_s": 300}
    policy.update(cors)
    return {"name": "api", "paths": ["/api"], "methods": ["GET", "POST"], "upstream": up.name,
            "cors": policy}


def preflight(gw, origin=APP, method="PUT", headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return http_request("OPTIONS", gw.url("/api/items"), headers=h)


def header_values(resp, name):
    return [v for k, v in resp.raw_headers if k.lower() == name]


def test_cors_preflight_answered_never_forwarded(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[cors_route(up, credentials=True)]))
    r = preflight(gw, headers="authorization, X-Trace")
    assert r.status == 204, r
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-methods"] == "GET, POST, PUT"
    assert r.headers["access-control-allow-headers"] == "authorization, x-trace"
    assert r.headers["access-control-max-age"] == "300"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in r.headers["vary"]
    assert r.body == b""
    # Denied: another origin, a look-alike, a method or a header the policy does not list.
    for bad in (preflight(gw, origin="https://evil.example"),
                preflight(gw, origin=APP + ".evil.example"),
                preflight(gw, origin=APP + ":8443"),
                preflight(gw, method="DELETE"),
                preflight(gw, headers="x-trace, x-other")):
        assert bad.status == 403, bad
        assert not [k for k in bad.headers if k.startswith("access-control-")], bad.headers
        assert bad.json()["error"] == "cors request denied"
    assert up.requests == [], [r.method for r in up.requests]
    # A plain OPTIONS (no preflight headers) is routed as usual: the route allows no OPTIONS.
    assert http_request("OPTIONS", gw.url("/api/items")).status == 405


def test_cors_actual_requests_get_exact_origin(upstream, gateway):
    up = upstream(name="svc", headers={"Access-Control-Allow-Origin": "*", "X-Total": "7"})
    gw = gateway(base_config(upstreams=[up], routes=[cors_route(up, credentials=True)]))
    r = http_request("GET", gw.url("/api/items"), headers={"Origin": "HTTPS://APP.example"})
    assert r.status == 200
    # The configured origin goes back, never the upstream's "*" nor the request's spelling.
    assert header_values(r, "access-control-allow-origin") == [APP]
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "X-Total"
    assert "Origin" in header_values(r, "vary")
    for origin in ("https://evil.example", "null", APP + "/"):
        r = http_request("GET", gw.url("/api/items"), headers={"Origin": origin})
        assert r.status == 200
        assert "access-control-allow-origin" not in r.headers, (origin, r.headers)
        assert "access-control-allow-credentials" not in r.headers
        assert "Origin" in header_values(r, "vary")  # the answer depends on Origin
    # The request still reached the upstream (browsers enforce CORS, not the gateway).
    assert len(up.requests) == 4


def test_cors_headers_on_gateway_errors(upstream, gateway):
    up = upstream(name="svc")
    route = cors_route(up)
    route["auth"] = {"api_key": {}}
    limited = cors_route(up)
    limited.update(name="limited", paths=["/lim"], rate_limit={"per_s": 1, "burst": 1})
    dead = cors_route(up)
    dead.update(name="dead", paths=["/dead"], upstream="dead")
    gw = gateway(base_config(upstreams=[up, {"name": "dead", "targets": [
        {"address": "127.0.0.1:%d" % free_port()}]}], routes=[route, limited, dead],
                             auth={"api_keys": {"header": "X-API-Key"}},
                             consumers=[{"name": "app", "api_keys": [API_KEY]}]))
    r = http_request("GET", gw.url("/api/x"), headers={"Origin": APP})
    assert r.status == 401 and r.headers["access-control-allow-origin"] == APP, r.headers
    assert r.headers["access-control-expose-headers"] == "X-Total"
    r = http_request("GET", gw.url("/api/x"), headers={"Origin": "https://evil.example"})
    assert r.status == 401 and "access-control-allow-origin" not in r.headers
    # A preflight needs no credentials.
    assert preflight(gw).status == 204
    r = http_request("GET", gw.url("/api/x"), headers={"Origin": APP, "X-API-Key": API_KEY})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == APP
    statuses = []
    for _ in range(4):
        r = http_request("GET", gw.url("/lim"), headers={"Origin": APP})
        statuses.append(r.status)
        assert r.headers.get("access-control-allow-origin") == APP, (r.status, r.headers)
    assert 429 in statuses, statuses
    r = http_request("GET", gw.url("/dead"), headers={"Origin": APP})
    assert r.status == 502 and r.headers.get("access-control-allow-origin") == APP, r.headers


def test_cors_any_origin_and_config_errors(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[cors_route(up, origins=["*"])]))
    r = http_request("GET", gw.url("/api"), headers={"Origin": "https://anyone.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert "Origin" not in " ".join(header_values(r, "vary"))
    assert preflight(gw, origin="https://anyone.example").headers[
        "access-control-allow-origin"] == "*"
    for cors, message in (
            ({"origins": ["*"], "credentials": True},
             "routes[0].cors.credentials: credentials need explicit origins"),
            ({"origins": ["https://a.example/app"]}, "routes[0].cors.origins[0]: "),
            ({"origins": ["*", APP]}, "routes[0].cors.origins[0]: \"*\" must be the only"),
            ({"origins": ["null"]}, "routes[0].cors.origins[0]: the \"null\" origin"),
            ({"origins": [APP], "methods": ["GE T"]}, "routes[0].cors.methods[0]: "),
            ({"origins": [APP], "max_age_s": -1}, "routes[0].cors.max_age_s"),
            ({"methods": ["GET"]}, "routes[0].cors.origins: is required"),
            ({"origins": [APP], "bogus": 1}, "routes[0].cors.bogus")):
        route = {"name": "api", "paths": ["/api"], "upstream": "svc", "cors": cors}
        code, output = gateway(base_config(upstreams=[up], routes=[route]),
                               expect_start_failure=True)
        assert code != 0 and message in output, (cors, output)


JSON_BODY = json.dumps([{"id": i, "name": "user-%d" % i, "email": "u%d@example.test" % i,
                         "active": i % 3 == 0} for i in range(300)]).encode()


def json_upstream(upstream, **extra):
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Content-Length": str(len(JSON_BODY)), "ETag": '"v1"'}
    headers.update(extra)
    return upstream(name="svc", handler=lambda req: (200, headers, JSON_BODY))


def compressed_config(up, route_extra=None, **top):
    route = {"name": "r", "paths": ["/"], "upstream": "svc"}
    route.update(route_extra or {})
    top.setdefault("compression", {"algorithms": ["br", "gzip"],
                                   "types": ["application/json", "text/*"],
                                   "min_bytes": 1024})
    return base_config(upstreams=[up], routes=[route], **top)


def decode(r):
    enc = r.headers.get("content-encoding")
    if enc == "gzip":
        return gzip.decompress(r.body)
    if enc == "br":
        return brotli.decompress(r.body)
    assert enc is None, enc
    return r.body


def test_compression_negotiates_by_q(upstream, gateway):
    up = json_upstream(upstream)
    gw = gateway(compressed_config(up))
    cases = {
        "gzip": "gzip",
        "gzip, deflate, br": "br",         # ties go to the configured order
        "br;q=0.5, gzip": "gzip",
        "br;q=0, gzip;q=0.001": "gzip",
        "*": "br",
        "*;q=0.2, br;q=0": "gzip",
        "identity;q=1, gzip;q=0.5": None,  # identity explicitly preferred
        "gzip;q=0, br;q=0": None,
        "deflate": None,
        "gzip;q=2": None,                  # a malformed q says nothing
        "": None,
    }
    for ae, want in cases.items():
        r = http_request("GET", gw.url("/u"), headers={"Accept-Encoding": ae})
        assert r.status == 200
        assert r.headers.get("content-encoding") == want, (ae, r.headers)
        assert decode(r) == JSON_BODY, ae
        assert "Accept-Encoding" in header_values(r, "vary"), ae
        if want:
            assert "content-length" not in r.headers, r.headers
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.headers["etag"] == 'W/"v1"'
            assert len(r.body) < len(JSON_BODY) / 3, (ae, len(r.body))
        else:
            assert r.headers["content-length"] == str(len(JSON_BODY))
            assert r.headers["etag"] == '"v1"'
    # Without Accept-Encoding at all: identity, and still Vary.
    raw = http_raw(gw.port(), b"GET /u HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-encoding" not in head and b"vary: accept-encoding" in head


def test_compression_only_where_it_applies(upstream, gateway):
    big_text = b"hello compressible world " * 400

    def handler(req):
        if req.path == "/small":
            return 200, {"Content-Type": "application/json"}, b'{"a": 1}' * 10
        if req.path == "/png":
            return 200, {"Content-Type": "image/png"}, big_text
        if req.path == "/encoded":
            return 200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, \
                gzip.compress(big_text)
        if req.path == "/nocontent":
            return 204, {"Content-Type": "text/plain"}, b""
        if req.path == "/notransform":
            return 200, {"Content-Type": "text/plain", "Cache-Control": "no-transform"}, \
                big_text
        # Unknown length (chunked), small: compressed anyway, its size is not known up front.
        return 200, {"Content-Type": "text/html"}, iter([b"<p>tiny</p>"])

    up = upstream(name="svc", handler=handler)
    gw = gateway(compressed_config(up))
    ae = {"Accept-Encoding": "gzip"}
    for path in ("/small", "/png", "/notransform"):
        r = http_request("GET", gw.url(path), headers=ae)
        assert "content-encoding" not in r.headers, (path, r.headers)
        assert r.headers.get("content-length"), path
    r = http_request("GET", gw.url("/encoded"), headers=ae)
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(r.body) == big_text
    assert r.headers.get("content-length") == str(len(r.body))  # untouched
    r = http_request("GET", gw.url("/nocontent"), headers=ae)
    assert r.status == 204 and "content-encoding" not in r.headers
    r = http_request("GET", gw.url("/chunked"), headers=ae)
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(r.body) == b"<p>tiny</p>"
    r = http_request("HEAD", gw.url("/chunked"), headers=ae)
    assert "content-encoding" not in r.headers


def test_route_compression_wins(upstream, gateway):
    up = json_upstream(upstream)
    gw = gateway(compressed_config(up, {"compression": {"algorithms": ["gzip"]}}))
    r = http_request("GET", gw.url("/u"), headers={"Accept-Encoding": "br, gzip"})
    assert r.headers["content-encoding"] == "gzip"
    gw2 = gateway(compressed_config(up, {"compression": False}))
    r = http_request("GET", gw2.url("/u"), headers={"Accept-Encoding": "br, gzip"})
    assert "content-encoding" not in r.headers and r.body == JSON_BODY
    gw3 = gateway(compressed_config(up, compression=None))
    r = http_request("GET", gw3.url("/u"), headers={"Accept-Encoding": "br, gzip"})
    assert "content-encoding" not in r.headers and "vary" not in r.headers


def test_compression_http10_client_gets_close_delimited_body(upstream, gateway):
    up = json_upstream(upstream)
    gw = gateway(compressed_config(up))
    raw = http_raw(gw.port(), b"GET /u HTTP/1.0\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    low = head.lower()
    assert b"content-encoding: gzip" in low and b"transfer-encoding" not in low, head
    assert b"content-length" not in low and b"connection: close" in low, head
    assert gzip.decompress(body) == JSON_BODY


def random_pieces(size, seed, digest, piece=256 * 1024):
    """Incompressible deterministic bytes (so the encoded body is as large as the input and
    the gateway's output side must hold back for a slow client); digest sees them all."""
    rnd = random.Random(seed)
    sent = 0
    while sent < size:
        n = min(piece, size - sent)
        data = rnd.randbytes(n)
        digest.update(data)
        sent += n
        yield data


def test_compression_streams_large_body_with_bounded_memory(upstream, gateway):
    size = 50 * 1024 * 1024
    sent_digests = []

    def handler(req):
        d = hashlib.sha256()
        sent_digests.append(d)
        return 200, {"Content-Type": "text/plain", "Content-Length": str(size)}, \
            random_pieces(size, 7, d)

    up = upstream(name="svc", handler=handler)
    # Under ASan, freed memory stays resident in its quarantine (256 MB by default): keep
    # that small so RSS shows what the gateway holds, not what it freed.
    gw = gateway(compressed_config(up), env={
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=8"})

    def rss_kb():
        with open("/proc/%d/status" % gw.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    before = rss_kb()
    peak = before
    for algo, dec in (("gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)),
                      ("br", brotli.Decompressor())):
        s = socket.create_connection(("127.0.0.1", gw.port()), timeout=30)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nAccept-Encoding: %s\r\n"
                  b"Connection: close\r\n\r\n" % algo.encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += s.recv(65536)
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert b"content-encoding: " + algo.encode() in head.lower(), head
        # Read slowly at first: the gateway must hold back rather than buffer the body.
        wire = bytearray(rest)
        t0 = time.monotonic()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            wire += chunk
            if time.monotonic() - t0 < 1.0:
                time.sleep(0.01)
                peak = max(peak, rss_kb())
        s.close()
        peak = max(peak, rss_kb())
        # De-chunk, then decode incrementally.
        digest, total, pos = hashlib.sha256(), 0, 0
        while True:
            eol = wire.index(b"\r\n", pos)
            n = int(wire[pos:eol], 16)
            if n == 0:
                break
            out = dec.process(bytes(wire[eol + 2:eol + 2 + n])) if algo == "br" else \
                dec.decompress(bytes(wire[eol + 2:eol + 2 + n]))
            digest.update(out)
            total += len(out)
            pos = eol + 2 + n + 2
        if algo == "gzip":
            tail = dec.flush()
            digest.update(tail)
            total += len(tail)
        assert total == size and digest.hexdigest() == sent_digests[-1].hexdigest(), algo
    # A 50 MB body held in memory would show; the two encoders, buffers and allocator
    # slack measure about 14 MB (21 MB under ASan).
    print("rss before %d KiB peak %d KiB" % (before, peak))
    assert peak - before < 32 * 1024, (before, peak)


def test_cached_response_stored_once_and_encoded_per_request(upstream, gateway):
    up = json_upstream(upstream, **{"Cache-Control": "max-age=60"})
    gw = gateway(compressed_config(up, {"cache": {"ttl_s": 30},
                                        "cors": {"origins": [APP]}}))
    r = http_request("GET", gw.url("/u"), headers={"Accept-Encoding": "gzip", "Origin": APP})
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(r.body) == JSON_BODY
    r = http_request("GET", gw.url("/u"))
    assert "age" in r.headers, r.headers  # a hit
    assert "content-encoding" not in r.headers and r.body == JSON_BODY
    assert r.headers["content-length"] == str(len(JSON_BODY))
    r = http_request("GET", gw.url("/u"), headers={"Accept-Encoding": "br", "Origin": APP})
    assert "age" in r.headers and r.headers["content-encoding"] == "br"
    assert brotli.decompress(r.body) == JSON_BODY
    assert r.headers["etag"] == 'W/"v1"' and r.headers["access-control-allow-origin"] == APP
    assert "Accept-Encoding" in header_values(r, "vary") and "Origin" in header_values(r, "vary")
    r = http_request("HEAD", gw.url("/u"), headers={"Accept-Encoding": "br"})
    assert r.status == 200 and "content-encoding" not in r.headers
    assert len(up.requests) == 1, [q.method for q in up.requests]


def test_compression_config_errors_name_their_path(upstream, gateway):
    up = json_upstream(upstream)
    for comp, message in (
            ({"algorithms": ["zstd"]}, "compression.algorithms[0]: unknown algorithm"),
            ({"algorithms": ["gzip", "gzip"]}, "compression.algorithms[1]: \"gzip\" is listed"),
            ({"types": ["json"]}, "compression.types[0]: \"json\" is not a media type"),
            ({"min_bytes": -5}, "compression.min_bytes"),
            ({"level": 3}, "compression.level"),
            ([1], "compression: must be an object")):
        code, output = gateway(compressed_config(up, compression=comp),
                               expect_start_failure=True)
        assert code != 0 and message in output, (comp, output)
    code, output = gateway(compressed_config(up, {"compression": {"types": ["text/*/x"]}}),
                           expect_start_failure=True)
    assert code != 0 and "routes[0].compression.types[0]" in output, output


def test_compression_of_a_chunked_body_across_many_reads(upstream, gateway):
    """The upstream's chunk framing is squeezed out in place across reads of every size."""
    rnd = random.Random(3)
    pieces = [("%d:" % i).encode() + bytes(rnd.choice(b"abcdefgh{}[],:") for _ in
                                          range(rnd.choice((1, 7, 300, 4096, 9000))))
              for i in range(600)]
    body = b"".join(pieces)
    up = upstream(name="svc", handler=lambda req: (200, {"Content-Type": "text/plain"},
                                                   iter(pieces)))
    gw = gateway(compressed_config(up))
    for ae, dec in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        r = http_request("GET", gw.url("/c"), headers={"Accept-Encoding": ae})
        assert r.headers["content-encoding"] == ae
        assert dec(r.body) == body, ae
    # HTTP/1.0: de-chunked upstream, close-delimited encoded body.
    raw = http_raw(gw.port(), b"GET /c HTTP/1.0\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n",
                   timeout=10)
    assert gzip.decompress(raw.partition(b"\r\n\r\n")[2]) == body
