"""End-to-end tests of the admin API's guards (Host check, bearer token, /config redaction
of header matches) and of config deployment (POST /config, generations, rollback) with
xgatectl apply/rollback/generations and the runtime file xgatectl finds the gateway by."""
import http.client

import pytest

from conftest import base_config, http_request

TOKEN = "adm-token-0123456789abcdef"
GET_PATHS = ("/status", "/config", "/metrics", "/stats")
POST_PATHS = ("/reload",)


def route(name, paths, upstream, **kw):
    r = {"name": name, "paths": paths, "upstream": upstream}
    r.update(kw)
    return r


def admin_get(gw, path, host=None, token=None, method="GET", body=None):
    """One admin request with an explicit Host (None: the admin address itself)."""
    hostport = gw.admin_url.split("//", 1)[1]
    h, _, p = hostport.rpartition(":")
    conn = http.client.HTTPConnection(h, int(p), timeout=10)
    headers = {"Host": host or hostport}
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


@pytest.fixture
def guarded(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a], routes=[route("a", ["/a"], "a")])
    cfg["admin"]["token"] = TOKEN
    return gateway(cfg)


def test_host_check_421(upstream, gateway):
    a = upstream(name="a")
    gw = gateway(base_config(upstreams=[a], routes=[route("a", ["/a"], "a")]))
    port = gw.admin_url.rsplit(":", 1)[1]
    for host in ("127.0.0.1:" + port, "127.0.0.1", "localhost:" + port, "LOCALHOST:" + port):
        status, _, _ = admin_get(gw, "/status", host=host)
        assert status == 200, host
    for host in ("attacker.example:" + port, "attacker.example", "127.0.0.2:" + port,
                 "127.0.0.1:1", "localhost.attacker.example:" + port, "[::1]:" + port):
        for path in GET_PATHS + ("/dashboard", "/nope"):
            status, _, body = admin_get(gw, path, host=host)
            assert status == 421, (host, path, body)
    # A refused POST changes nothing.
    status, _, _ = admin_get(gw, "/reload", host="evil.example", method="POST")
    assert status == 421
    assert http_request("GET", gw.admin_url + "/status").json()["config"]["generation"] == 1


def test_token_required(guarded):
    gw = guarded
    for path in GET_PATHS:
        status, headers, _ = admin_get(gw, path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer")
        status, _, _ = admin_get(gw, path, token=TOKEN[:-1] + "x")
        assert status == 401, path
        status, _, _ = admin_get(gw, path, token=TOKEN)
        assert status == 200, path
    for path in POST_PATHS:
        status, _, _ = admin_get(gw, path, method="POST", body=b"{}")
        assert status == 401, path
    # The dashboard page carries no data: it loads without the token (its scripts send it).
    status, _, body = admin_get(gw, "/dashboard")
    assert status == 200 and b"<html" in body
    # The Host check comes first, token or not.
    assert admin_get(gw, "/status", host="evil.example", token=TOKEN)[0] == 421


def test_metrics_public(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a], routes=[route("a", ["/a"], "a")])
    cfg["admin"].update(token=TOKEN, metrics_public=True)
    gw = gateway(cfg)
    assert admin_get(gw, "/metrics")[0] == 200
    assert admin_get(gw, "/status")[0] == 401


def test_admin_config_errors(tmp_path):
    from conftest import run_check
    for admin, needle in (({"address": "127.0.0.1:1", "token": 5}, "admin.token: must be a string"),
                          ({"address": "127.0.0.1:1", "token": "short"},
                           "admin.token: must be at least 16 characters"),
                          ({"address": "127.0.0.1:1", "metrics_public": "yes"},
                           "admin.metrics_public"),
                          ({"address": "127.0.0.1:1", "tokens": "x"}, "admin.tokens")):
        code, out = run_check(base_config(admin=admin), tmp_path)
        assert code != 0 and needle in out, (admin, out)


def test_config_redacts_header_matches(upstream, gateway):
    a = upstream(name="a")
    b = upstream(name="b")
    cfg = base_config(upstreams=[a, b], routes=[
        route("a", ["/a"], "a", headers={"X-Shared": "MATCH-SECRET-1"},
              split=[{"upstream": "b", "weight": 0, "match": {"headers": {"X-C": "MATCH-SECRET-2"}}},
                     {"upstream": "a", "weight": 1}])])
    gw = gateway(cfg)
    r = http_request("GET", gw.admin_url + "/config")
    assert r.status == 200
    assert b"MATCH-SECRET-1" not in r.body and b"MATCH-SECRET-2" not in r.body
    assert r.json()["routes"][0]["headers"]["X-Shared"] == "<redacted>"
