"""End-to-end: route hide_credentials, mTLS client certificates, the ModSecurity WAF.

Keys, certificates and CRLs are generated at test time with python3-cryptography in the
test's tmp_path.
"""
import base64
import os
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import http_request, run_check

API_KEY = "k-sec-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
ISSUER = "https://auth.xgate.test"


@pytest.fixture(scope="module")
def es_key():
    return ec.generate_private_key(ec.SECP256R1())


def write_jwks(path, key):
    from jwt.algorithms import ECAlgorithm
    import json
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    path.write_text(json.dumps({"keys": [jwk]}))


def bearer(key, sub="user-1"):
    now = int(time.time())
    return "Bearer " + jwt.encode({"sub": sub, "iss": ISSUER, "iat": now, "exp": now + 600},
                                  key, algorithm="ES256", headers={"kid": "k1"})


def hide_config(base_config, up, jwks):
    routes = [
        {"name": "jwt-hidden", "paths": ["/jh"], "upstream": "svc", "auth": {"jwt": {}},
         "hide_credentials": True},
        {"name": "jwt-shown", "paths": ["/js"], "upstream": "svc", "auth": {"jwt": {}}},
        {"name": "key-hidden", "paths": ["/kh"], "upstream": "svc", "auth": {"api_key": {}},
         "hide_credentials": True},
        {"name": "key-shown", "paths": ["/ks"], "upstream": "svc", "auth": {"api_key": {}}},
        {"name": "either-hidden", "paths": ["/eh"], "upstream": "svc",
         "auth": {"any_of": [{"jwt": {}}, {"api_key": {}}]}, "hide_credentials": True},
    ]
    return base_config(
        [up], routes,
        auth={"jwt": {"jwks_file": str(jwks), "algorithms": ["ES256"], "issuer": ISSUER},
              "api_keys": {"header": "X-API-Key", "query": "apikey"}},
        consumers=[{"name": "app", "api_keys": [API_KEY]}])


@pytest.fixture
def hide_gw(gateway, upstream, base_config, tmp_path, es_key):
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, es_key)
    return gateway(hide_config(base_config, up, jwks)), up


def last(up):
    return up.wait_requests(1)[-1]


def test_hide_credentials_bearer_header(hide_gw, es_key):
    gw, up = hide_gw
    tok = bearer(es_key)
    resp = http_request("GET", gw.url("/jh/a?x=1&y=2"), None,
                        {"Authorization": tok, "X-Other": "kept"})
    assert resp.status == 200, resp.body
    seen = last(up)
    assert "authorization" not in seen.headers
    assert seen.headers.get("x-other") == "kept"
    assert seen.query == "x=1&y=2"
    up.reset()
    # without hide_credentials the token still reaches the upstream
    assert http_request("GET", gw.url("/js/a"), None, {"Authorization": tok}).status == 200
    assert last(up).headers.get("authorization") == tok


def test_hide_credentials_api_key_header_and_query(hide_gw):
    gw, up = hide_gw
    resp = http_request("GET", gw.url("/kh/a?q=1"), None,
                        {"X-API-Key": API_KEY, "Authorization": "Basic dTpw", "X-Keep": "1"})
    assert resp.status == 200, resp.body
    seen = last(up)
    assert "x-api-key" not in seen.headers
    # an API-key route does not read Authorization: the upstream's own scheme stays
    assert seen.headers.get("authorization") == "Basic dTpw"
    assert seen.headers.get("x-keep") == "1" and seen.query == "q=1"
    up.reset()
    resp = http_request("GET", gw.url("/kh/b?a=1&apikey=%s&b=2&flag" % API_KEY))
    assert resp.status == 200, resp.body
    seen = last(up)
    assert seen.query == "a=1&b=2&flag", seen.query
    assert API_KEY not in seen.target
    up.reset()
    # the key as the only parameter, and a percent-encoded copy of the name
    resp = http_request("GET", gw.url("/kh/c?apikey=%s&api%%6Bey=x" % API_KEY))
    assert resp.status == 200, resp.body
    assert last(up).target == "/kh/c"
    up.reset()
    resp = http_request("GET", gw.url("/ks/d?apikey=%s&z=1" % API_KEY))
    assert resp.status == 200
    assert last(up).query == "apikey=%s&z=1" % API_KEY


def test_hide_credentials_any_of_hides_every_kind(hide_gw, es_key):
    gw, up = hide_gw
    resp = http_request("GET", gw.url("/eh/a?apikey=%s&k=v" % API_KEY), None,
                        {"Authorization": bearer(es_key), "X-API-Key": API_KEY})
    assert resp.status == 200, resp.body
    seen = last(up)
    assert "authorization" not in seen.headers and "x-api-key" not in seen.headers
    assert seen.query == "k=v"


def test_hide_credentials_config_errors(tmp_path, base_config):
    up = {"name": "svc", "targets": [{"address": "127.0.0.1:9"}]}
    cfg = base_config([up], [{"name": "r", "paths": ["/"], "upstream": "svc",
                              "hide_credentials": True}])
    code, out = run_check(cfg, tmp_path)
    assert code == 1 and "routes[0].hide_credentials: needs" in out, out
    cfg["routes"][0]["hide_credentials"] = "yes"
    code, out = run_check(cfg, tmp_path)
    assert code == 1 and "routes[0].hide_credentials" in out, out
