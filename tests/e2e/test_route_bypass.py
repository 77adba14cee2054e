"""Route selection and path normalisation (issue 10, class 3): a request never reaches a
protected route's upstream path through an open route, whatever path parameters, "..;",
trailing dots, case, encodings or Host spelling it uses; a host's own route wins over a
host-less route of the same path in any file order."""
import json
import socket

import pytest

from conftest import base_config, http_request

KEY = "route-bypass-key-7c1e"


def raw_get(port, target, host="gw.test", headers=""):
    """Sends one GET with the request-target verbatim; returns (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                   % (target, host, headers)).encode("latin-1"))
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.fixture
def guarded(gateway, upstream):
    """/admin needs an API key; "/" (everything else) is open; both on one upstream."""
    up = upstream(name="svc")
    cfg = base_config(
        upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
        routes=[{"name": "open", "paths": ["/"], "upstream": "svc"},
                {"name": "admin", "paths": ["/admin"], "upstream": "svc",
                 "auth": {"api_key": {}}}],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "ops", "api_keys": [KEY], "roles": ["admin"]}])
    return gateway(cfg), up


# Each of these is "/admin" (or below it) to some common upstream framework.
BYPASSES = [
    "/admin;x", "/admin;jsessionid=1/secret", "/admin/..;/admin", "/admin.", "/admin./secret",
    "/admin..", "/admin%2e", "/admin.;x", "/open/..;/admin", "/open/..;x=1/admin/secret",
    "/open/.;/../admin", "/;x/admin", "/ADMIN", "/Admin/secret", "/%61dmin", "/%41DMIN",
    "/open/%2e%2e/admin", "/open/%2E%2E/admin", "/open/.%2e/admin", "//admin", "///admin/x",
    "/./admin", "/open/../admin", "/admin/secret/..;/..;/admin",
]


@pytest.mark.parametrize("target", BYPASSES)
def test_protected_prefix_not_reachable_through_open_route(guarded, target):
    gw, up = guarded
    status, body = raw_get(gw.port(), target)
    assert status == 401, (target, status, body)
    assert not up.requests, [r.path for r in up.requests]
    # With the key, the upstream gets the normalised path the router matched.
    status, body = raw_get(gw.port(), target, headers="X-API-Key: %s\r\n" % KEY)
    assert status == 200, (target, status, body)
    path = json.loads(body)["path"]
    assert path.lower().startswith("/admin") and ";" not in path and ".." not in path
    assert not path.endswith(".")


@pytest.mark.parametrize("target", [
    "/admin%20", "/%20admin", "/admin%20/x", "/admin%09", "/admin%0a", "/admin%0d%0a",
    "/admin%00", "/.../admin", "/admin/...", "/open/..../admin", "/admin/%2e%2e%2e",
    "/..;/admin", "/open/..;/..;/admin", "/admin%2fsecret", "/admin%5c", "/admin%1f",
    "/admin%3Bx", "/open/..%3b/admin", "/admin%7f", "/open/%252e%252e/admin",
])
def test_ambiguous_paths_are_rejected(guarded, target):
    gw, up = guarded
    status, body = raw_get(gw.port(), target, headers="X-API-Key: %s\r\n" % KEY)
    assert status == 400, (target, status, body)
    assert json.loads(body)["status"] == 400
    assert not up.requests


def test_normalised_path_is_forwarded_on_open_route(guarded):
    gw, up = guarded
    for target, want in [("/open;x", "/open"), ("/open./a;b/c", "/open/a/c"),
                         ("/a/b/..;/c", "/a/c"), ("/files/My%20Doc.pdf", "/files/My%20Doc.pdf"),
                         ("/Open/CamelCase", "/Open/CamelCase"), ("/adminx", "/adminx")]:
        status, body = raw_get(gw.port(), target)
        assert status == 200, (target, status, body)
        assert json.loads(body)["path"] == want, target
    assert up.requests[-1].path == "/adminx"


@pytest.fixture
def hosted(gateway, upstream):
    """A host-less route listed before a host-specific one of the same path, and a
    host-specific protected route behind a host-less open one."""
    anyhost, special = upstream(name="any"), upstream(name="special")
    cfg = base_config(
        upstreams=[{"name": "any", "targets": [{"address": anyhost.address}]},
                   {"name": "special", "targets": [{"address": special.address}]}],
        routes=[{"name": "h-any", "paths": ["/h"], "upstream": "any"},
                {"name": "h-wild", "paths": ["/h"], "upstream": "any", "hosts": ["*.wild.test"],
                 "strip_prefix": True},
                {"name": "h-api", "paths": ["/h"], "upstream": "special",
                 "hosts": ["API.Example.com."]},
                {"name": "s-open", "paths": ["/s"], "upstream": "any"},
                {"name": "s-guard", "paths": ["/s"], "upstream": "special",
                 "hosts": ["secure.example.com"], "auth": {"api_key": {}}}],
        auth={"api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "ops", "api_keys": [KEY], "roles": []}])
    return gateway(cfg), anyhost, special


@pytest.mark.parametrize("host", ["api.example.com", "API.EXAMPLE.COM", "api.example.com.",
                                  "api.example.com:8080", "Api.Example.Com.:80"])
def test_host_specific_route_wins_in_any_order(hosted, host):
    gw, _, _ = hosted
    status, body = raw_get(gw.port(), "/h/1", host=host)
    assert status == 200 and json.loads(body)["upstream"] == "special", (host, body)


def test_host_less_and_wildcard_routes(hosted):
    gw, _, _ = hosted
    for host in ("other.test", "example.com", "api.example.com.evil", "xapi.example.com"):
        status, body = raw_get(gw.port(), "/h/1", host=host)
        assert status == 200 and json.loads(body)["upstream"] == "any", host
        assert json.loads(body)["path"] == "/h/1"
    # The wildcard route (strip_prefix) wins over the host-less one for its hosts.
    status, body = raw_get(gw.port(), "/h/1", host="a.WILD.test.")
    assert status == 200 and json.loads(body)["path"] == "/1"


@pytest.mark.parametrize("host", ["secure.example.com", "SECURE.example.com",
                                  "secure.example.com.", "secure.example.com:443"])
def test_host_protected_route_not_bypassed_by_host_spelling(hosted, host):
    gw, anyhost, special = hosted
    status, _ = raw_get(gw.port(), "/s/x", host=host)
    assert status == 401, host
    status, body = raw_get(gw.port(), "/s/x", host=host, headers="X-API-Key: %s\r\n" % KEY)
    assert status == 200 and json.loads(body)["upstream"] == "special"
    assert not [r for r in anyhost.requests if r.path.startswith("/s")]


def test_route_path_must_be_normal(gateway, upstream):
    """A route path the request normaliser would change could never match: an error."""
    up = upstream()
    for bad in ("/admin;x", "/admin.", "/a/../b", "/a//b", "/%61dmin", "/a/./b", "/...",
                "/admin.$"):
        code, out = gateway(base_config(
            upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
            routes=[{"name": "r", "paths": ["/ok", bad], "upstream": "u"}]),
            expect_start_failure=True)
        assert code != 0, bad
        assert "routes[0].paths[1]" in out and "normalised" in out, out
    gw = gateway(base_config(
        upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
        routes=[{"name": "r", "paths": ["/api/", "/x$", "/A.b", "/%C3%A9", "/v1.2"],
                 "upstream": "u"}]))
    assert http_request("GET", gw.url("/v1.2/x")).status == 200


def test_route_host_config_errors(gateway, upstream):
    up = upstream()
    for bad in ("example.com:80", "*example.com", ".example.com", "a/b"):
        code, out = gateway(base_config(
            upstreams=[{"name": "u", "targets": [{"address": up.address}]}],
            routes=[{"name": "r", "paths": ["/"], "upstream": "u", "hosts": ["ok.test", bad]}]),
            expect_start_failure=True)
        assert code != 0
        assert "routes[0].hosts[1]" in out, out


# ---- class 6: absolute-form ------------------------------------------------------------------

def raw_exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            out += got
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("request_line,host_header,want_upstream,want_host", [
    # the authority is the host, routed and forwarded as the only Host
    ("GET http://api.example.com/h/1 HTTP/1.1", "Host: api.example.com", "special",
     "api.example.com"),
    ("GET http://API.example.com:8080/h/1 HTTP/1.1", "Host: api.example.com:8080", "special",
     "API.example.com:8080"),
    # RFC 9112 3.2.2: a conflicting Host field is ignored
    ("GET http://api.example.com/h/1 HTTP/1.1", "Host: other.test", "special",
     "api.example.com"),
    ("GET http://other.test/h/1 HTTP/1.1", "Host: api.example.com", "any", "other.test"),
    # HTTP/1.0 without Host: the upstream still gets one, from the authority
    ("GET http://api.example.com/h/1 HTTP/1.0", "", "special", "api.example.com"),
    ("GET https://api.example.com./h/1?x=1 HTTP/1.1", "Host: x", "special",
     "api.example.com."),
])
def test_absolute_form_host_from_authority(hosted, request_line, host_header, want_upstream,
                                           want_host):
    gw, anyhost, special = hosted
    data = "%s\r\n%s%sConnection: close\r\n\r\n" % (
        request_line, host_header, "\r\n" if host_header else "")
    status, body = raw_exchange(gw.port(), data.encode())
    assert status == 200, body
    assert json.loads(body)["upstream"] == want_upstream
    up = special if want_upstream == "special" else anyhost
    seen = up.requests[-1]
    assert [v for n, v in seen.raw_headers if n.lower() == "host"] == [want_host]
    assert seen.target.startswith("/h/1")  # origin-form upstream


def test_absolute_form_host_protected_route(hosted):
    """The protected host route cannot be dodged by naming another Host next to it."""
    gw, anyhost, special = hosted
    status, _ = raw_exchange(gw.port(), b"GET http://secure.example.com/s/x HTTP/1.1\r\n"
                                        b"Host: public.test\r\nConnection: close\r\n\r\n")
    assert status == 401
    status, body = raw_exchange(gw.port(), b"GET http://public.test/s/x HTTP/1.1\r\n"
                                           b"Host: secure.example.com\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["upstream"] == "any"
    assert [v for n, v in anyhost.requests[-1].raw_headers if n.lower() == "host"] == \
        ["public.test"]


@pytest.mark.parametrize("data", [
    b"GET http://a.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    b"GET http://u@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET ftp://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
])
def test_absolute_form_bad(hosted, data):
    gw, anyhost, special = hosted
    status, _ = raw_exchange(gw.port(), data)
    assert status == 400
    assert not anyhost.requests and not special.requests
