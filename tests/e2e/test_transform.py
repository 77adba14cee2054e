"""Route transform.response.headers: remove → rename → set → add on every response the client
gets (upstream and the gateway's own errors), and config errors naming their JSON path —
including the transform keys that are not implemented (request side, bodies)."""
from conftest import base_config, http_request


def header_values(resp, name):
    return [v for k, v in resp.raw_headers if k.lower() == name]


def transform_route(up, headers, **extra):
    route = {"name": "api", "paths": ["/api"], "methods": ["GET"], "upstream": up.name,
             "transform": {"response": {"headers": headers}}}
    route.update(extra)
    return route


def test_response_header_ops_in_order(upstream, gateway):
    up = upstream(name="svc", headers={"Server": "origin/1.0", "X-Powered-By": "php",
                                       "X-Old": "kept-value", "X-Drop-Then-Rename": "d",
                                       "Cache-Control": "public, max-age=60"})
    ops = {"remove": ["Server", "X-Powered-By", "X-Drop-Then-Rename"],
           "rename": {"X-Old": "X-New", "X-Drop-Then-Rename": "X-Should-Not-Exist"},
           "set": {"Cache-Control": "no-store", "X-Frame": "deny"},
           "add": {"X-New": "appended", "X-Via": "xgate"}}
    gw = gateway(base_config(upstreams=[up], routes=[transform_route(up, ops)]))
    r = http_request("GET", gw.url("/api/items"))
    assert r.status == 200, r
    assert header_values(r, "x-powered-by") == []
    assert header_values(r, "x-old") == []
    assert header_values(r, "x-should-not-exist") == []  # removed before the rename
    assert header_values(r, "x-drop-then-rename") == []
    assert header_values(r, "cache-control") == ["no-store"]  # set replaces
    assert header_values(r, "x-frame") == ["deny"]  # set adds when absent
    assert header_values(r, "x-new") == ["kept-value", "appended"]  # add appends
    assert header_values(r, "x-via") == ["xgate"]
    assert "origin/1.0" not in header_values(r, "server")
    # the upstream saw an untouched request
    assert len(up.requests) == 1


def test_set_after_rename_replaces_renamed_header(upstream, gateway):
    up = upstream(name="svc", headers={"X-Old": "v"})
    ops = {"rename": {"X-Old": "X-New"}, "set": {"X-New": "s"}}
    gw = gateway(base_config(upstreams=[up], routes=[transform_route(up, ops)]))
    r = http_request("GET", gw.url("/api"))
    assert header_values(r, "x-new") == ["s"]
    assert header_values(r, "x-old") == []


def test_gateway_errors_are_transformed(upstream, gateway):
    up = upstream(name="svc")
    ops = {"set": {"Cache-Control": "no-store"}, "add": {"X-Via": "xgate"}}
    gw = gateway(base_config(upstreams=[up], routes=[transform_route(up, ops)]))
    assert header_values(http_request("GET", gw.url("/api")), "x-via") == ["xgate"]
    up.stop()  # the route's upstream is gone: the gateway answers 502 itself
    r = http_request("GET", gw.url("/api"))
    assert r.status == 502, r
    assert header_values(r, "cache-control") == ["no-store"]
    assert header_values(r, "x-via") == ["xgate"]
    assert r.json()["error"]


def test_transform_config_errors_name_their_path(upstream, gateway):
    up = upstream(name="svc")
    for transform, message in (
            ({"request": {"headers": {"set": {"X-Consumer": "forged"}}}},
             "routes[0].transform.request"),
            ({"response": {"body": {"deny": ["internal"]}}},
             "routes[0].transform.response.body"),
            ({"response": {"body_format": "negotiate"}},
             "routes[0].transform.response.body_format"),
            ({"response": {"headers": {"remove": ["bad name"]}}},
             "routes[0].transform.response.headers.remove[0]"),
            ({"response": {"headers": {"set": {"X-A": "a\r\nX-B: b"}}}},
             "routes[0].transform.response.headers.set.X-A"),
            ({"response": {"headers": {"add": {"X-A": "{consumer}"}}}},
             "routes[0].transform.response.headers.add.X-A"),
            ({"response": {"headers": {"rename": {"X-A": 3}}}},
             "routes[0].transform.response.headers.rename.X-A"),
            ({"response": {"headers": {"bogus": {}}}},
             "routes[0].transform.response.headers.bogus"),
            ({"response": {"headers": {"set": {"X-%d" % i: "v" for i in range(9)}}}},
             "routes[0].transform.response.headers: at most 16 header edits"),
            ("yes", "routes[0].transform: must be an object")):
        route = {"name": "api", "paths": ["/api"], "upstream": "svc", "transform": transform}
        code, output = gateway(base_config(upstreams=[up], routes=[route]),
                               expect_start_failure=True)
        assert code != 0 and message in output, (transform, output)
