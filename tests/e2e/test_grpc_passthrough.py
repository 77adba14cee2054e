"""Native gRPC through the gateway: a real grpcio client -> gateway (h2c listener, and h2
over TLS with ALPN) -> a grpcio server on an h2c upstream. Unary, server streaming
(messages arrive one by one, not after the whole answer), client streaming, error
statuses with their messages, auth failures as UNAUTHENTICATED, grpc-timeout as the
deadline the gateway enforces itself (DEADLINE_EXCEEDED, trailers-only, the upstream
stream cancelled), a 20 MB streamed answer to a slow reader with the gateway's memory
bounded, and HTTP/1.1 clients on an h2c route (505)."""
import hashlib
import json
import socket
import threading
import time
from concurrent import futures

import grpc
import h2.events
import pytest

from conftest import base_config, http_request, run_check
from harness.h2upstream import H2Upstream
from test_h2 import H2Client
from test_tls import make_cert

API_KEY = "k-grpc-0123456789"
CHUNK = 64 * 1024
BIG_MESSAGES = 320  # 320 x 64 KiB = 20 MiB


class Svc:
    def __init__(self):
        self.first_seen = threading.Event()  # set by the client after message 0
        self.late = False
        self.metadata = []
        self.cancelled = threading.Event()

    def unary(self, req, ctx):
        self.metadata.append(dict(ctx.invocation_metadata()))
        if req == b"missing":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: missing")
        ctx.set_trailing_metadata((("x-served-by", "grpcio"),))
        return b"echo:" + req

    def slow(self, req, ctx):
        ctx.add_callback(self.cancelled.set)
        for _ in range(100):
            if not ctx.is_active():
                break
            time.sleep(0.05)
        return b"too late"

    def stream(self, req, ctx):
        n = int(req or b"10")
        yield b"m0"
        # the next messages only once the client holds the first: a gateway that buffered
        # the whole answer would deliver nothing before this wait ran out
        if n > 1 and not self.first_seen.wait(10):
            self.late = True
        for i in range(1, n):
            yield b"m%d" % i

    def big(self, req, ctx):
        block = bytes(range(256)) * (CHUNK // 256)
        for i in range(BIG_MESSAGES):
            yield block[:CHUNK - 4] + i.to_bytes(4, "big")

    def upload(self, it, ctx):
        total, count = 0, 0
        for m in it:
            total += len(m)
            count += 1
        return b"%d/%d" % (count, total)


@pytest.fixture(scope="module")
def svc():
    s = Svc()
    h = {
        "Unary": grpc.unary_unary_rpc_method_handler(s.unary),
        "Slow": grpc.unary_unary_rpc_method_handler(s.slow),
        "Stream": grpc.unary_stream_rpc_method_handler(s.stream),
        "Big": grpc.unary_stream_rpc_method_handler(s.big),
        "Upload": grpc.stream_unary_rpc_method_handler(s.upload),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Svc", h),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    s.port = port
    yield s
    server.stop(0)


def gw_config(port, **route):
    cfg = base_config(
        upstreams=[{"name": "svc", "protocol": "h2c",
                    "targets": [{"address": "127.0.0.1:%d" % port}]}],
        routes=[dict({"name": "grpc", "paths": ["/t.Svc/"], "upstream": "svc"}, **route)],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "app", "api_keys": [API_KEY]}],
        access_log=None)
    cfg["listeners"][0]["http2"] = True
    return cfg


@pytest.fixture
def gw(svc, gateway, tmp_path):
    cfg = gw_config(svc.port)
    code, out = run_check(cfg, tmp_path)
    assert code == 0, out
    return gateway(cfg)


@pytest.fixture
def channel(gw):
    ch = grpc.insecure_channel("127.0.0.1:%d" % gw.port())
    yield ch
    ch.close()


def call(ch, method, kind="unary_unary"):
    return getattr(ch, kind)("/t.Svc/" + method)


def test_unary_round_trip_with_metadata_and_trailers(channel, svc):
    resp, c = call(channel, "Unary").with_call(b"hi", metadata=(("x-trace", "t1"),),
                                               timeout=10)
    assert resp == b"echo:hi"
    assert c.code() == grpc.StatusCode.OK
    assert ("x-served-by", "grpcio") in c.trailing_metadata()
    md = svc.metadata[-1]
    assert md.get("x-trace") == "t1", md
    assert md.get("x-request-id"), md  # forwarded with the gateway's headers


def test_error_status_and_message_pass_through(channel):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Unary")(b"missing", timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing: missing"


def test_server_streaming_arrives_incrementally(channel, svc):
    svc.first_seen.clear()
    svc.late = False
    it = call(channel, "Stream", "unary_stream")(b"50", timeout=20)
    first = next(it)
    assert first == b"m0"
    svc.first_seen.set()
    rest = list(it)
    assert not svc.late, "the first message came only after the whole answer"
    assert [first] + rest == [b"m%d" % i for i in range(50)]


def test_client_streaming(channel):
    msgs = (bytes([i % 256]) * (1000 + i) for i in range(200))
    resp = call(channel, "Upload", "stream_unary")(msgs, timeout=20)
    assert resp == b"200/%d" % sum(1000 + i for i in range(200))


def test_auth_failure_is_unauthenticated(svc, gateway):
    cfg = gw_config(svc.port, auth={"api_key": {}})
    gw = gateway(cfg)
    with grpc.insecure_channel("127.0.0.1:%d" % gw.port()) as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Unary")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
        assert call(ch, "Unary")(b"x", metadata=(("x-api-key", API_KEY),),
                                 timeout=10) == b"echo:x"


def grpc_request(port, path, timeout_hdr):
    cli = H2Client("127.0.0.1", port)
    hdrs = [("content-type", "application/grpc"), ("te", "trailers")]
    if timeout_hdr:
        hdrs.append(("grpc-timeout", timeout_hdr))
    sid = cli.request(path, method="POST", headers=hdrs, body=b"\0\0\0\0\0")
    return cli, sid


def test_grpc_timeout_is_enforced_by_the_gateway(gateway):
    """The h2 upstream ignores grpc-timeout (it answers after 3 s): the gateway answers
    DEADLINE_EXCEEDED trailers-only after ~300 ms and cancels the upstream stream."""
    up = H2Upstream(name="slow")
    try:
        def config(**up_extra):
            cfg = base_config(upstreams=[up.config(**up_extra)],
                              routes=[{"name": "s", "paths": ["/"], "upstream": "slow"}],
                              access_log=None)
            cfg["listeners"][0]["http2"] = True
            return cfg
        gw = gateway(config())
        cli, sid = grpc_request(gw.port(), "/json?d=3000", "300m")
        t0 = time.monotonic()
        assert cli.pump(lambda: cli.responses[sid]["ended"], timeout=5)
        took = time.monotonic() - t0
        r = cli.responses[sid]
        assert 0.2 < took < 2.0, took
        assert r["headers"][":status"] == "200", r
        assert r["headers"]["grpc-status"] == "4", r  # trailers-only: in the one HEADERS
        assert r["trailers"] is None and r["body"] == b"", r
        # malformed grpc-timeout values are ignored: the upstream's answer comes
        cli2, sid2 = grpc_request(gw.port(), "/json?d=100", "3x")
        assert cli2.pump(lambda: cli2.responses[sid2]["ended"], timeout=5)
        assert cli2.responses[sid2]["headers"][":status"] == "200"
        assert "grpc-status" not in cli2.responses[sid2]["headers"]
        # capped by the upstream's timeouts: 10 S asked, read timeout 500 ms
        gw2 = gateway(config(timeouts_ms={"connect": 200, "read": 500}))
        cli3, sid3 = grpc_request(gw2.port(), "/json?d=3000", "10S")
        t0 = time.monotonic()
        assert cli3.pump(lambda: cli3.responses[sid3]["ended"], timeout=5)
        assert time.monotonic() - t0 < 2.0
        assert cli3.responses[sid3]["headers"]["grpc-status"] == "4"
    finally:
        up.stop()


def test_deadline_with_grpcio_cancels_upstream(channel, svc):
    svc.cancelled.clear()
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Slow")(b"x", timeout=0.4)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert svc.cancelled.wait(5), "the upstream call was not cancelled"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_large_stream_to_slow_reader_is_bounded_and_exact(channel, gw):
    base = rss_kb(gw.pid)
    peak = base
    digest = hashlib.sha256()
    want = hashlib.sha256()
    block = bytes(range(256)) * (CHUNK // 256)
    n = 0
    for i, m in enumerate(call(channel, "Big", "unary_stream")(b"", timeout=120)):
        digest.update(m)
        want.update(block[:CHUNK - 4] + i.to_bytes(4, "big"))
        n += 1
        if i % 16 == 0:
            time.sleep(0.05)  # a slow reader: the windows close, the gateway must wait
            peak = max(peak, rss_kb(gw.pid))
    assert n == BIG_MESSAGES
    assert digest.hexdigest() == want.hexdigest()
    # 20 MiB went through; the gateway held at most a few windows of it
    print("20 MiB streamed, gateway RSS +%d KiB" % (peak - base))
    assert peak - base < 8 * 1024, (base, peak)


def test_tls_alpn_h2(svc, gateway, tmp_path):
    crt, key = make_cert(tmp_path, "default.test", ["default.test"])
    cfg = gw_config(svc.port)
    cfg["listeners"][0]["tls"] = {"certificates": [{"cert": crt, "key": key}]}
    gw = gateway(cfg)
    creds = grpc.ssl_channel_credentials(root_certificates=open(crt, "rb").read())
    with grpc.secure_channel("127.0.0.1:%d" % gw.port(), creds,
                             options=(("grpc.ssl_target_name_override", "default.test"),)) as ch:
        assert call(ch, "Unary")(b"tls", timeout=10) == b"echo:tls"
        got = list(call(ch, "Stream", "unary_stream")(b"1", timeout=10))
        assert got == [b"m0"]
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Unary")(b"missing", timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_http1_client_on_h2c_route_gets_505(gw):
    r = http_request("POST", gw.url("/t.Svc/Unary"), body=b"x",
                     headers={"Content-Type": "application/json"})
    assert r.status == 505, r
    assert r.json()["error"] == "route needs HTTP/2"


def h2_gateway(gateway, up, limits=None, **route):
    cfg = base_config(upstreams=[up.config()],
                      routes=[dict({"name": "s", "paths": ["/"], "upstream": up.name}, **route)],
                      access_log=None)
    if limits:
        cfg["limits"] = limits
    cfg["listeners"][0]["http2"] = True
    return gateway(cfg)


def test_request_body_and_trailers_stream_to_the_upstream(gateway):
    up = H2Upstream(name="echo")
    try:
        gw = h2_gateway(gateway, up)
        cli = H2Client("127.0.0.1", gw.port())
        sid = cli.request("/echo", method="POST", headers=[("te", "trailers")],
                          body=b"part-1.", end=False)
        # the first part comes back before the request ended: streamed, not gathered
        assert cli.pump(lambda: cli.responses[sid]["body"] == b"part-1.", timeout=5), \
            cli.responses[sid]
        cli.conn.send_data(sid, b"part-2")
        cli.conn.send_headers(sid, [("x-checksum", "c0ffee")], end_stream=True)
        cli.flush()
        assert cli.pump(lambda: cli.responses[sid]["ended"], timeout=5)
        assert cli.responses[sid]["body"] == b"part-1.part-2"
        assert ("/echo", {"x-checksum": "c0ffee"}) in up.request_trailers
    finally:
        up.stop()


def test_response_trailers_and_held_body_filters_on_h2c_route(gateway):
    up = H2Upstream(name="t")
    try:
        gw = h2_gateway(gateway, up)
        cli = H2Client("127.0.0.1", gw.port())
        sid = cli.request("/trailers")
        assert cli.pump(lambda: cli.responses[sid]["ended"], timeout=5)
        r = cli.responses[sid]
        assert r["body"] == b"hello" and r["trailers"]["grpc-status"] == "0", r
        # a filter that rewrites the whole body still gets it whole from an h2c upstream
        gw2 = h2_gateway(gateway, up, transform={"response": {"body": {
            "deny": ["conn"], "set": {"v": 2}}}})
        cli2 = H2Client("127.0.0.1", gw2.port())
        sid2 = cli2.request("/json")
        assert cli2.pump(lambda: cli2.responses[sid2]["ended"], timeout=5)
        r2 = cli2.responses[sid2]
        assert r2["headers"][":status"] == "200", r2
        assert json.loads(r2["body"]) == {"path": "/json", "v": 2}, r2
    finally:
        up.stop()


def test_upload_backpressure_when_nobody_reads(gateway):
    """The client uploads to /echo and does not read the echo: the client's window to
    the gateway closes, the echo fills the upstream's 1 MiB, the upstream stops taking
    the body, the gateway stops acknowledging it — the upload stalls far below its size.
    Reading again, every byte comes back in order."""
    total = 12 << 20
    pattern = bytes(range(251)) * 66  # 16566 bytes, not a multiple of a frame
    up = H2Upstream(name="echo")
    try:
        gw = h2_gateway(gateway, up, limits={"max_body_bytes": 64 << 20})
        base = rss_kb(gw.pid)
        cli = H2Client("127.0.0.1", gw.port())
        sid = cli.request("/echo", method="POST", end=False)
        sent, got = 0, bytearray()
        reading = False
        pending_ack = []
        last_progress = time.monotonic()
        stalled_at = None
        deadline = time.monotonic() + 60
        while len(got) < total and time.monotonic() < deadline:
            room = cli.conn.local_flow_control_window(sid) if sent < total else 0
            if room > 0:
                k = min(room, cli.conn.max_outbound_frame_size, total - sent)
                off = sent % len(pattern)
                chunk = (pattern[off:] + pattern * 2)[:k]
                cli.conn.send_data(sid, chunk, end_stream=sent + k == total)
                sent += k
                cli.flush()
                last_progress = time.monotonic()
                continue
            cli.sock.settimeout(0.05)
            try:
                data = cli.sock.recv(1 << 16)
            except socket.timeout:
                data = None
            if data:
                for ev in cli.conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        got += ev.data
                        if reading:
                            cli.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                               sid)
                        else:
                            pending_ack.append(ev.flow_controlled_length)
                    elif isinstance(ev, h2.events.WindowUpdated):
                        last_progress = time.monotonic()
                cli.flush()
            if not reading and time.monotonic() - last_progress > 1.0:
                stalled_at = sent
                peak = rss_kb(gw.pid)
                reading = True
                for n in pending_ack:
                    cli.conn.acknowledge_received_data(n, sid)
                cli.flush()
            if not reading and sent == total:
                break
        assert stalled_at is not None, "the upload never stalled (sent %d)" % sent
        print("upload stalled at %d bytes, gateway RSS +%d KiB" % (stalled_at, peak - base))
        assert stalled_at < 6 << 20, stalled_at
        assert peak - base < 8 * 1024, (base, peak)
        assert len(got) == total, (len(got), sent)
        expect = (pattern * (total // len(pattern) + 1))[:total]
        assert hashlib.sha256(bytes(got)).digest() == hashlib.sha256(expect).digest()
    finally:
        up.stop()


def test_request_body_filter_on_h2c_route(gateway):
    """transform.request.body reads the whole body first; the call then sends the new one."""
    up = H2Upstream(name="echo")
    try:
        gw = h2_gateway(gateway, up, transform={"request": {"body": {
            "remove": ["secret"], "set": {"v": 2}}}})
        cli = H2Client("127.0.0.1", gw.port())
        sid = cli.request("/echo", method="POST",
                          headers=[("content-type", "application/json")],
                          body=json.dumps({"a": 1, "secret": "x"}).encode())
        assert cli.pump(lambda: cli.responses[sid]["ended"], timeout=5)
        r = cli.responses[sid]
        assert r["headers"][":status"] == "200", r
        assert json.loads(r["body"]) == {"a": 1, "v": 2}, r
    finally:
        up.stop()
