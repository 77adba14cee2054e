"""HTTP/2 upstreams ("protocol": "h2c") for the gateway's own calls (compose here): the
answer over h2c, several calls multiplexed on one connection, max_streams_per_connection,
GOAWAY (streams past last-stream-id retried on a new connection), a protocol error, and
the loader refusing a proxied route to an h2c upstream."""
import time

import pytest

from conftest import base_config, http_request, run_check, scaled
from harness.h2upstream import H2Upstream


@pytest.fixture
def h2up():
    servers = []

    def make(name="g"):
        s = H2Upstream(name)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def compose_cfg(ups, calls):
    return base_config(upstreams=ups, access_log=None,
                       routes=[{"name": "agg", "paths": ["/agg"],
                               "compose": {"calls": calls, "errors": True}}])


def calls_to(n, path, upstream="g"):
    return [{"name": "c%d" % i, "upstream": upstream, "path": "%s%sn=%d" %
             (path, "&" if "?" in path else "?", i)} for i in range(n)]


def test_compose_call_over_h2c(h2up, gateway):
    g = h2up()
    gw = gateway(compose_cfg([g.config()], [{"name": "a", "upstream": "g", "path": "/json"}]))
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    assert r.json() == {"path": "/json", "conn": 1}
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    assert g.connections == 1  # the idle connection was used again
    assert g.requests == 2


def test_parallel_calls_share_one_connection(h2up, gateway):
    g = h2up()
    gw = gateway(compose_cfg([g.config()], calls_to(8, "/json?d=300")))
    t0 = time.monotonic()
    r = http_request("GET", gw.url("/agg"))
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert "_errors" not in r.json(), r.json()
    assert g.requests == 8
    assert g.connections == 1
    assert g.max_concurrent == 8
    assert took < scaled(1.5), took  # overlapped, not 8 x 300 ms


def test_max_streams_per_connection_opens_more(h2up, gateway):
    g = h2up()
    gw = gateway(compose_cfg([g.config(max_streams_per_connection=2)],
                             calls_to(6, "/json?d=200")))
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    assert "_errors" not in r.json(), r.json()
    assert g.requests == 6
    assert g.connections == 3
    assert g.max_concurrent <= 6


def test_goaway_retries_later_streams_on_a_new_connection(h2up, gateway):
    g = h2up()
    gw = gateway(compose_cfg([g.config()], calls_to(4, "/goaway")))
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    doc = r.json()
    assert "_errors" not in doc, doc
    # one answered before GOAWAY on the first connection, the refused three on a second
    assert sorted(g.conn_of) == [1, 2, 2, 2], (g.conn_of, g.paths, g.connections, doc)
    assert g.connections == 2


def test_protocol_error_fails_the_call(h2up, gateway):
    g = h2up()
    gw = gateway(compose_cfg([g.config()], [{"name": "a", "upstream": "g", "path": "/bad"}]))
    r = http_request("GET", gw.url("/agg"))
    doc = r.json()
    assert doc["_errors"]["a"]["reason"] == "invalid response", (r, doc)


def test_loader_takes_proxied_route_to_h2c_and_refuses_unknown_protocol(h2up, tmp_path):
    g = h2up()
    cfg = base_config(upstreams=[g.config()], routes=[{"paths": ["/"], "upstream": "g"}])
    code, out = run_check(cfg, tmp_path)
    assert code == 0, out
    cfg = base_config(upstreams=[dict(g.config(), protocol="h3")], routes=[])
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "upstreams[0].protocol: must be one of" in out, out
