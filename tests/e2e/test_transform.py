"""Route transform: response headers (remove → rename → set → add on every response the client
gets, upstream and the gateway's own errors); request headers with templates, query, the regex
path rewrite; JSON request body ops through the buffered request-body phase (Content-Length
and chunked bodies, the 413 bound, 400 on a body that is not JSON); config errors naming their
JSON path. Response bodies: JSON ops on a held upstream 2xx body (502 when it is not JSON or too
large), body_format "xml" on requests and "negotiate" on responses with the SPEC's mapping."""
import json

from conftest import base_config, http_raw, http_request, parse_responses

API_KEY = "k-transform-0123456789"


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
            ({"request": {"headers": {"set": {"X-Forwarded-For": "1.2.3.4"}}}},
             "routes[0].transform.request.headers.set.X-Forwarded-For: \"X-Forwarded-For\" is "
             "set by the gateway"),
            ({"request": {"path": {"from": "^/api/(", "to": "/v2"}}},
             "routes[0].transform.request.path.from: invalid regular expression"),
            ({"request": {"path": {"from": "^/api/(.*)$", "to": "/v2/$3"}}},
             "routes[0].transform.request.path.to: names group $3"),
            ({"request": {"headers": {"add": {"X-A": "{jwt}"}}}},
             "routes[0].transform.request.headers.add.X-A: unknown template {jwt}"),
            ({"request": {"body_format": "yaml"}}, "routes[0].transform.request.body_format"),
            ({"response": {"body_format": "xml"}}, "routes[0].transform.response.body_format"),
            ({"response": {"body": {"deny": ["internal"], "allow": ["id"]}}},
             "routes[0].transform.response.body.deny: \"allow\" and \"deny\" exclude"),
            ({"response": {"body": {"target": "a..b"}}},
             "routes[0].transform.response.body.target: is not a dot path"),
            ({"response": {"body": {"mapping": {}}}},
             "routes[0].transform.response.body.mapping"),
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


def request_route(up, request, **extra):
    route = {"name": "api", "paths": ["/api"], "upstream": up.name,
             "transform": {"request": request}}
    route.update(extra)
    return route


def test_request_headers_query_and_path(upstream, gateway):
    up = upstream(name="svc")
    request = {"headers": {"remove": ["X-Debug"], "rename": {"X-Old": "X-New"},
                           "set": {"X-Client": "{consumer}", "X-User": "{path.4}/{query.q}"},
                           "add": {"X-Via": "xgate"}},
               "query": {"remove": ["debug"], "set": {"v": "2"}},
               "path": {"from": "^/api/v1/(.*)$", "to": "/v2/$1"}}
    cfg = base_config(upstreams=[up], routes=[request_route(up, request,
                                                            auth={"api_key": {}})])
    cfg["auth"] = {"api_keys": {"header": "X-API-Key"}}
    cfg["consumers"] = [{"name": "mobile-app", "api_keys": [API_KEY]}]
    gw = gateway(cfg)
    r = http_request("GET", gw.url("/api/v1/users/7?debug=1&q=x&v=1"),
                     headers={"X-API-Key": API_KEY, "X-Debug": "1", "X-Old": "o",
                              "X-Client": "forged"})
    assert r.status == 200, r
    seen = up.requests[-1]
    assert seen.path == "/v2/users/7"
    assert seen.query == "q=x&v=2"
    assert "x-debug" not in seen.headers
    assert "x-old" not in seen.headers and seen.headers["x-new"] == "o"
    assert seen.headers["x-client"] == "mobile-app"  # the forged value never reaches it
    assert seen.headers["x-user"] == "7/x"
    assert seen.headers["x-via"] == "xgate"
    # a path the pattern does not match goes on unchanged
    r = http_request("GET", gw.url("/api/other?debug=1"), headers={"X-API-Key": API_KEY})
    assert r.status == 200, r
    assert up.requests[-1].path == "/api/other" and up.requests[-1].query == "v=2"
    # the capture cannot climb out of /v2: normalised before routing, and again after
    r = http_request("GET", gw.url("/api/v1/a/%2e%2e/b"), headers={"X-API-Key": API_KEY})
    assert r.status == 200, r
    assert up.requests[-1].path == "/v2/b"


def test_set_template_without_value_drops_client_header(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(
        up, {"headers": {"set": {"X-Client": "{consumer}"}}})]))
    r = http_request("GET", gw.url("/api"), headers={"X-Client": "forged"})
    assert r.status == 200, r
    assert "x-client" not in up.requests[-1].headers


BODY_OPS = {"body": {"remove": ["password"], "rename": {"userName": "user_name"},
                     "set": {"source": "gateway", "meta.v": 2}}}


def test_request_body_is_buffered_and_replaced(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(up, BODY_OPS)]))
    body = json.dumps({"userName": "ann", "password": "secret", "keep": [1, 2]}).encode()
    r = http_request("POST", gw.url("/api/users"), body=body,
                     headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    seen = up.requests[-1]
    assert json.loads(seen.body) == {"user_name": "ann", "keep": [1, 2], "source": "gateway",
                                     "meta": {"v": 2}}
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert "transfer-encoding" not in seen.headers
    # chunked from the client: de-chunked, replaced, sent with a Content-Length
    pieces = [b'{"userName": ', b'"bob", "pass', b'word": "x"}']
    r = http_request("POST", gw.url("/api/users"), body=iter(pieces),
                     headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    seen = up.requests[-1]
    assert not seen.chunked
    assert json.loads(seen.body) == {"user_name": "bob", "source": "gateway", "meta": {"v": 2}}
    assert int(seen.headers["content-length"]) == len(seen.body)
    # a bodiless request passes untouched
    r = http_request("GET", gw.url("/api/users"))
    assert r.status == 200 and up.requests[-1].body == b"", r


def test_request_body_keep_alive_and_pipelining(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(up, BODY_OPS)]))
    body = b'{"password": "p", "a": 1}'
    one = (b"POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body))
    two = (b"POST /api/y HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n5\r\n{\"b\":\r\n2\r\n2}\r\n0\r\nX-T: 1\r\n\r\n")
    responses = parse_responses(http_raw(gw.port(), one + two))
    assert [resp[0] for resp in responses] == [200, 200], responses
    assert [json.loads(req.body) for req in up.requests[-2:]] == [
        {"a": 1, "source": "gateway", "meta": {"v": 2}},
        {"b": 2, "source": "gateway", "meta": {"v": 2}}]
    assert up.requests[-1].trailers == []  # a buffered body drops the client's trailers


def test_request_body_errors(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(up, BODY_OPS)],
                             limits={"max_body_bytes": 1000}))
    r = http_request("POST", gw.url("/api/x"), body=b"name=ann&password=x",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and r.json()["error"] == "request body is not JSON", r
    big = b'{"a": "' + b"x" * 4000 + b'"}'
    r = http_request("POST", gw.url("/api/x"), body=iter([big[:2000], big[2000:]]))
    assert r.status == 413 and r.json()["error"] == "request body too large", r
    r = http_request("POST", gw.url("/api/x"), body=big)  # by Content-Length, before reading
    assert r.status == 413, r
    raw = http_raw(gw.port(), b"POST /api/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\nzz\r\n")
    assert parse_responses(raw)[0][0] == 400
    assert len(up.requests) == 0


RESP_BODY = {"target": "data", "deny": ["internal"], "rename": {"name": "title"},
             "set": {"v": 2}}


def json_upstream(upstream, body, status=200, chunked=False, ctype="application/json"):
    def handler(req):
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        return status, {"Content-Type": ctype, "X-Origin": "1"}, (
            iter([payload[:5], payload[5:]]) if chunked else payload)
    return upstream(name="svc", handler=handler)


def response_route(up, body, headers=None, **extra):
    response = {"body": body}
    if headers:
        response["headers"] = headers
    return {"name": "api", "paths": ["/api"], "upstream": up.name,
            "transform": {"response": response}, **extra}


def test_response_body_is_rewritten(upstream, gateway):
    origin = {"data": {"id": 7, "name": "Ann", "internal": "x"}, "meta": 1}
    for chunked in (False, True):
        up = json_upstream(upstream, origin, chunked=chunked)
        gw = gateway(base_config(upstreams=[up], routes=[response_route(
            up, RESP_BODY, headers={"set": {"X-T": "1"}, "remove": ["X-Origin"]})]))
        for _ in range(2):  # the upstream connection is reused after a held body
            r = http_request("GET", gw.url("/api/u"), headers={"Accept-Encoding": "gzip"})
            assert r.status == 200, r
            assert r.json() == {"id": 7, "title": "Ann", "v": 2}
            assert int(r.headers["content-length"]) == len(r.body)
            assert "transfer-encoding" not in r.headers
            assert r.headers["x-t"] == "1" and "x-origin" not in r.headers
            assert r.headers["content-type"] == "application/json"
        # a body rewritten on the way out is asked for as identity
        assert all("accept-encoding" not in req.headers for req in up.requests)
        assert len({req.conn_id for req in up.requests}) == 1
        up.stop()


def test_response_body_errors(upstream, gateway):
    up = json_upstream(upstream, b"<html>not json</html>", ctype="text/html")
    gw = gateway(base_config(upstreams=[up], routes=[response_route(up, RESP_BODY)]))
    r = http_request("GET", gw.url("/api"))
    assert r.status == 502 and r.json()["error"] == "upstream response is not JSON", r
    up.stop()
    up = json_upstream(upstream, {"other": 1})
    gw = gateway(base_config(upstreams=[up], routes=[response_route(up, RESP_BODY)]))
    r = http_request("GET", gw.url("/api"))
    assert r.status == 502 and r.json()["error"] == "upstream response has no such target", r
    up.stop()
    up = json_upstream(upstream, {"data": {"blob": "x" * 5000}})
    gw = gateway(base_config(upstreams=[up], routes=[response_route(up, RESP_BODY)],
                             limits={"max_compose_bytes": 2048}))
    r = http_request("GET", gw.url("/api"))
    assert r.status == 502 and r.json()["error"] == "upstream response too large", r
    up.stop()
    # an origin error keeps its own body
    up = json_upstream(upstream, b"missing", status=404, ctype="text/plain")
    gw = gateway(base_config(upstreams=[up], routes=[response_route(up, RESP_BODY)]))
    r = http_request("GET", gw.url("/api"))
    assert r.status == 404 and r.body == b"missing", r


def test_response_body_with_compression_and_config_limits(upstream, gateway):
    origin = {"data": {"text": "y" * 3000}}
    up = json_upstream(upstream, origin)
    gw = gateway(base_config(upstreams=[up], routes=[response_route(
        up, {"target": "data"}, compression={"algorithms": ["gzip"], "min_bytes": 100})]))
    import gzip
    r = http_request("GET", gw.url("/api"), headers={"Accept-Encoding": "gzip"})
    assert r.status == 200, r
    assert r.headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(r.body)) == {"text": "y" * 3000}
    for extra, what in (({"cache": {"ttl_s": 5}}, "cache"),):
        route = response_route(up, RESP_BODY, **extra)
        code, output = gateway(base_config(upstreams=[up], routes=[route]),
                               expect_start_failure=True)
        assert code != 0 and ("routes[0].transform.response.body: cannot be combined with "
                              + what) in output, output


SPEC_XML = b'<user id="7"><name>Ann</name><role>a</role><role>b</role></user>'
SPEC_JSON = {"user": {"@id": "7", "name": "Ann", "role": ["a", "b"]}}


def test_request_body_json_to_xml(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(
        up, {"body": {"remove": ["user.password"]}, "body_format": "xml"})]))
    body = {"user": dict(SPEC_JSON["user"], password="p")}
    r = http_request("POST", gw.url("/api/u"), body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    seen = up.requests[-1]
    assert seen.body == b'<?xml version="1.0" encoding="UTF-8"?>\n' + SPEC_XML
    assert seen.headers["content-type"] == "application/xml"
    assert int(seen.headers["content-length"]) == len(seen.body)
    # several top-level keys: wrapped in <root>
    r = http_request("POST", gw.url("/api/u"), body=b'{"a": 1, "b": "x"}')
    assert r.status == 200, r
    assert up.requests[-1].body.endswith(b"<root><a>1</a><b>x</b></root>")
    for bad in (b"<user/>", b'{"a b": 1}'):
        r = http_request("POST", gw.url("/api/u"), body=bad)
        assert r.status == 400, (bad, r)
    assert len(up.requests) == 2


def test_response_negotiate(upstream, gateway):
    up = json_upstream(upstream, SPEC_XML, ctype="application/xml")
    route = {"name": "api", "paths": ["/api"], "upstream": up.name,
             "transform": {"response": {"body_format": "negotiate"}}}
    gw = gateway(base_config(upstreams=[up], routes=[route]))
    # an XML origin, a client that does not ask for XML: JSON
    r = http_request("GET", gw.url("/api"), headers={"Accept": "application/json"})
    assert r.status == 200, r
    assert r.json() == SPEC_JSON
    assert r.headers["content-type"] == "application/json"
    assert "accept" in r.headers.get("vary", "").lower()
    # a client preferring XML gets it
    r = http_request("GET", gw.url("/api"),
                     headers={"Accept": "application/json;q=0.5, application/xml"})
    assert r.status == 200 and r.headers["content-type"] == "application/xml", r
    assert r.body.endswith(SPEC_XML)
    up.stop()
    # a JSON origin for a client preferring XML
    up = json_upstream(upstream, SPEC_JSON)
    route["upstream"] = up.name
    route["transform"]["response"]["body"] = {"deny": ["user.role"]}
    gw = gateway(base_config(upstreams=[up], routes=[route]))
    r = http_request("GET", gw.url("/api"), headers={"Accept": "application/xml"})
    assert r.status == 200, r
    assert r.body.endswith(b'<user id="7"><name>Ann</name></user>')
    assert int(r.headers["content-length"]) == len(r.body)
    up.stop()
    # an origin saying XML that is not: 502
    up = json_upstream(upstream, b"<user><name>Ann</user>", ctype="text/xml")
    route["upstream"] = up.name
    gw = gateway(base_config(upstreams=[up], routes=[route]))
    r = http_request("GET", gw.url("/api"))
    assert r.status == 502 and r.json()["error"] == "upstream response is not XML", r


def test_request_body_idle_timeout_and_expect_continue(upstream, gateway):
    up = upstream(name="svc")
    gw = gateway(base_config(upstreams=[up], routes=[request_route(up, BODY_OPS)],
                             limits={"idle_timeout_ms": 300}))
    # a body that stops arriving: 408 once the body idle timeout passes
    raw = http_raw(gw.port(), b"POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n"
                   b"{\"a\"", timeout=5)
    assert parse_responses(raw)[0][0] == 408, raw
    # Expect: 100-continue is answered before the body is read
    import socket
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as sock:
        sock.sendall(b"POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 8\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b'{"a": 1}')
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    assert parse_responses(data)[0][0] == 200, data
    assert json.loads(up.requests[-1].body) == {"a": 1, "source": "gateway", "meta": {"v": 2}}
    assert len(up.requests) == 1
