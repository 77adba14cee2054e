"""OAuth 2.0 token introspection (RFC 7662) against a fake IdP on loopback: the request the
gateway sends (Basic or form client credentials, percent-encoded form body), active /
inactive / expired tokens, route scopes, forwarded claims, the per-worker cache (positive,
negative, bounded by exp), concurrent misses sharing one IdP call, failing closed with 503
when the IdP is down, slow, non-200 or not JSON, an https IdP (verified chain and name,
kept-alive TLS connection), any_of with API keys, {jwt.CLAIM} compose
templates, metrics, and config errors with their JSON paths."""
import base64
import datetime
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import base_config, free_port, http_request, run_check, scaled

SECRET = "s3:cr&t"
CLIENT_ID = "gw client"
API_KEY = "k-introspect-0123456789"
TOKEN = "opaque a+b/c=d"  # characters that must be percent-encoded in the form


class FakeIdP:
    """Answers introspection requests from a table token -> answer (dict, or a callable
    returning (status, content type, body bytes)); records every request."""

    def __init__(self, upstream, answers, delay_s=0.0):
        self.answers = answers
        self.delay_s = delay_s
        self.server = upstream(name="idp", handler=self.handle)

    def handle(self, req):
        if self.delay_s:
            time.sleep(self.delay_s)
        form = urllib.parse.parse_qs(req.body.decode(), keep_blank_values=True)
        answer = self.answers.get(form.get("token", [""])[0], {"active": False})
        if callable(answer):
            status, ctype, body = answer()
            return status, {"Content-Type": ctype}, body
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    @property
    def calls(self):
        return [r for r in self.server.requests if r.path != "/health"]

    @property
    def address(self):
        return self.server.address


def active(sub="bob", scope="read", exp_in=600, **extra):
    doc = {"active": True, "sub": sub, "scope": scope, "client_id": "app-1",
           "iss": "https://idp.test"}
    if exp_in is not None:
        doc["exp"] = int(time.time()) + exp_in
    doc.update(extra)
    return doc


def intro_cfg(url, api, routes=None, **settings):
    intro = {"url": url, "client_id": CLIENT_ID, "client_secret": "${IDP_SECRET}",
             "timeout_ms": 500, "cache_ttl_s": 60,
             "forward_claims": {"sub": "X-User-Id", "tier": "X-Tier"}}
    intro.update(settings)
    routes = routes or [{"name": "api", "paths": ["/api"], "upstream": "api",
                         "auth": {"introspection": {"scopes": ["read"]}}}]
    return base_config(upstreams=[api], routes=routes, auth={"introspection": intro},
                       consumers=[{"name": "batch", "api_keys": [API_KEY]}], access_log=None)


def start(gateway, upstream, answers, delay_s=0.0, routes=None, **settings):
    idp = FakeIdP(upstream, answers, delay_s)
    api = upstream(name="api")
    url = "http://%s/oauth2/introspect" % idp.address
    gw = gateway(intro_cfg(url, api, routes, **settings), env={"IDP_SECRET": SECRET})
    return gw, idp, api


def get(gw, path="/api/x", token=TOKEN, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    return http_request("GET", gw.url(path), headers=h)


def metric(gw, outcome):
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    m = re.search(r'^xgate_introspection_requests_total\{outcome="%s"\} (\d+)' % outcome,
                  text, re.M)
    assert m, text
    return int(m.group(1))


def test_active_token_request_and_forwarded_claims(upstream, gateway):
    gw, idp, api = start(gateway, upstream, {TOKEN: active(tier="gold")})
    r = get(gw, headers={"X-User-Id": "mallory"})  # a client copy is never believed
    assert r.status == 200, r
    seen = api.requests[-1]
    assert seen.headers["x-user-id"] == "bob"
    assert seen.headers["x-tier"] == "gold"
    assert seen.headers["authorization"] == "Bearer " + TOKEN
    call = idp.calls[-1]
    assert call.method == "POST" and call.path == "/oauth2/introspect"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    # RFC 6749 2.3.1: id and secret form-urlencoded, then base64
    want = base64.b64encode(b"gw+client:s3%3Acr%26t").decode()
    assert call.headers["authorization"] == "Basic " + want
    assert call.body == b"token=opaque+a%2Bb%2Fc%3Dd&token_type_hint=access_token"
    assert "x-user-id" not in idp.calls[-1].headers


def test_hide_credentials_drops_the_bearer_token(upstream, gateway):
    routes = [{"name": "api", "paths": ["/api"], "upstream": "api", "hide_credentials": True,
               "auth": {"introspection": {}}}]
    gw, idp, api = start(gateway, upstream, {TOKEN: active()}, routes=routes)
    assert get(gw).status == 200
    assert "authorization" not in api.requests[-1].headers
    assert api.requests[-1].headers["x-user-id"] == "bob"


def test_client_credentials_in_the_form(upstream, gateway):
    gw, idp, _ = start(gateway, upstream, {TOKEN: active()}, client_auth="post")
    assert get(gw).status == 200
    call = idp.calls[-1]
    assert "authorization" not in call.headers
    form = urllib.parse.parse_qs(call.body.decode())
    assert form == {"token": [TOKEN], "token_type_hint": ["access_token"],
                    "client_id": [CLIENT_ID], "client_secret": [SECRET]}


def test_inactive_expired_missing_and_scopes(upstream, gateway):
    gw, idp, api = start(gateway, upstream, {
        "off": {"active": False},
        "old": active(exp_in=-5),
        "narrow": active(scope="write"),
        "wide": active(scope="write read admin"),
    })
    for token in ("off", "old", "unknown"):
        r = get(gw, token=token)
        assert r.status == 401, (token, r)
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert r.json()["error"] == "inactive", r.json()
    r = get(gw, token="narrow")
    assert r.status == 403 and r.json()["error"] == "forbidden_scope", r
    assert get(gw, token="wide").status == 200
    r = get(gw, token=None)
    assert r.status == 401 and r.json()["error"] == "missing"
    assert len(idp.calls) == 5  # no token: no call
    assert len(api.requests) == 1


def test_answers_are_cached_positive_and_negative(upstream, gateway):
    gw, idp, _ = start(gateway, upstream, {TOKEN: active(), "off": {"active": False}},
                       cache_ttl_s=1)
    assert get(gw).status == 200
    assert get(gw).status == 200
    assert len(idp.calls) == 1
    assert metric(gw, "active") == 1 and metric(gw, "cached") == 1
    assert get(gw, token="off").status == 401
    assert get(gw, token="off").status == 401
    assert len(idp.calls) == 2
    assert metric(gw, "inactive") == 1
    time.sleep(1.2)  # cache_ttl_s 1: both answers expire, the IdP is asked again
    assert get(gw).status == 200
    assert get(gw, token="off").status == 401
    assert len(idp.calls) == 4


def test_negative_answers_live_at_most_five_seconds(upstream, gateway):
    answers = {TOKEN: {"active": False}}
    gw, idp, _ = start(gateway, upstream, answers)
    assert get(gw).status == 401
    answers[TOKEN] = active()  # the IdP changes its mind: seen once the 5 s are over
    assert get(gw).status == 401
    assert len(idp.calls) == 1
    time.sleep(5.2)
    assert get(gw).status == 200
    assert len(idp.calls) == 2


def test_cache_ends_at_exp(upstream, gateway):
    answers = {TOKEN: active(exp_in=2)}
    gw, idp, _ = start(gateway, upstream, answers)
    assert get(gw).status == 200
    assert get(gw).status == 200
    assert len(idp.calls) == 1
    time.sleep(2.2)
    answers[TOKEN] = {"active": False}
    assert get(gw).status == 401
    assert len(idp.calls) == 2


def test_concurrent_misses_share_one_call(upstream, gateway):
    gw, idp, _ = start(gateway, upstream, {TOKEN: active()}, delay_s=0.3)
    results = []

    def one():
        results.append(get(gw).status)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 8, results
    assert len(idp.calls) == 1
    assert metric(gw, "active") == 1 and metric(gw, "cached") == 7


def test_client_gone_while_waiting_cancels_the_call(upstream, gateway):
    gw, idp, api = start(gateway, upstream, {TOKEN: active()}, delay_s=0.6, timeout_ms=2000)
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=5) as s:
        s.sendall(("GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % TOKEN).encode())
        idp.server.wait_requests(1)
    time.sleep(0.8)  # the IdP answered meanwhile, to a call nobody waits for any more
    assert get(gw).status == 200
    assert len(idp.calls) == 2  # the abandoned call cached nothing
    assert len(api.requests) == 1


def test_reload_does_not_reuse_answers_of_the_old_settings(upstream, gateway):
    idp = FakeIdP(upstream, {TOKEN: active()})
    api = upstream(name="api")
    cfg = intro_cfg("http://%s/i" % idp.address, api)
    gw = gateway(cfg, env={"IDP_SECRET": SECRET})
    assert get(gw).status == 200 and get(gw).status == 200
    assert len(idp.calls) == 1
    cfg["auth"]["introspection"]["client_id"] = "gw2"
    gw.reload(cfg)
    want = "Basic " + base64.b64encode(("gw2:" + urllib.parse.quote_plus(SECRET)).encode()).decode()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and idp.calls[-1].headers["authorization"] != want:
        assert get(gw).status == 200
        time.sleep(0.05)
    assert idp.calls[-1].headers["authorization"] == want
    assert len(idp.calls) == 2


def test_idp_down_fails_closed(upstream, gateway):
    api = upstream(name="api")
    url = "http://127.0.0.1:%d/introspect" % free_port()
    gw = gateway(intro_cfg(url, api), env={"IDP_SECRET": SECRET})
    t0 = time.monotonic()
    r = get(gw)
    assert r.status == 503, r
    assert r.json()["error"] == "introspection_unavailable"
    assert time.monotonic() - t0 < scaled(1.0)
    assert get(gw).status == 503  # failures are not cached: asked again
    assert metric(gw, "error") == 2
    assert not api.requests


def test_idp_slow_fails_closed_within_timeout(upstream, gateway):
    gw, idp, api = start(gateway, upstream, {TOKEN: active()}, delay_s=1.5, timeout_ms=300)
    t0 = time.monotonic()
    r = get(gw)
    took = time.monotonic() - t0
    assert r.status == 503, r
    assert scaled(0.25) <= took < scaled(0.9), took
    assert metric(gw, "timeout") == 1
    assert not api.requests


def test_idp_bad_answers_fail_closed(upstream, gateway):
    gw, idp, api = start(gateway, upstream, {
        "e500": lambda: (500, "application/json", b'{"active": true}'),
        "html": lambda: (200, "text/html", b"<html>login</html>"),
        "noactive": lambda: (200, "application/json", b'{"sub": "bob"}'),
    })
    for token in ("e500", "html", "noactive"):
        r = get(gw, token=token)
        assert r.status == 503, (token, r)
    assert metric(gw, "error") == 3
    assert not api.requests


def test_any_of_api_key_or_introspection(upstream, gateway):
    routes = [{"name": "api", "paths": ["/api"], "upstream": "api",
               "auth": {"any_of": [{"api_key": {}}, {"introspection": {"scopes": ["read"]}}]}}]
    gw, idp, api = start(gateway, upstream, {TOKEN: active()}, routes=routes)
    r = get(gw, token=None, headers={"X-API-Key": API_KEY})
    assert r.status == 200, r
    assert api.requests[-1].headers["x-consumer"] == "batch"
    assert not idp.calls  # a good key needs no IdP call
    assert get(gw).status == 200
    assert api.requests[-1].headers["x-user-id"] == "bob"
    assert len(idp.calls) == 1
    assert get(gw, token="nope", headers={"X-API-Key": "wrong"}).status == 401
    assert get(gw, token=None).status == 401


def test_claims_in_compose_templates(upstream, gateway):
    users = upstream(name="users", handler=lambda req: (
        200, {"Content-Type": "application/json"}, json.dumps({"seen": req.path}).encode()))
    routes = [{"name": "me", "paths": ["/me"], "auth": {"introspection": {}},
               "compose": {"calls": [{"name": "u", "upstream": "users",
                                      "path": "/users/{jwt.sub}"}]}}]
    idp = FakeIdP(upstream, {TOKEN: active(sub="bob 7")})
    cfg = intro_cfg("http://%s/i" % idp.address, users, routes)
    gw = gateway(cfg, env={"IDP_SECRET": SECRET})
    r = get(gw, path="/me")
    assert r.status == 200, r
    assert r.json() == {"seen": "/users/bob%207"}
    assert users.requests[-1].headers["x-user-id"] == "bob 7"


def make_cert(directory, name):
    """A self-signed certificate for 127.0.0.1 (IP SAN) and the DNS name idp.test."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("idp.test")]),
                critical=False)
            .sign(key, hashes.SHA256()))
    crt, keyfile = directory / (name + ".crt"), directory / (name + ".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(crt), str(keyfile)


class TlsIdP:
    """An https introspection endpoint (http.server over ssl) recording (peer port,
    headers, form) per call."""

    def __init__(self, directory, answers):
        crt, key = make_cert(directory, "idp")
        self.ca = crt
        self.calls = []
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                form = urllib.parse.parse_qs(body.decode())
                idp.calls.append((self.client_address[1], dict(self.headers), form))
                out = json.dumps(answers.get(form["token"][0], {"active": False})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/introspect" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_https_idp_verified_and_pooled(upstream, gateway, tmp_path):
    idp = TlsIdP(tmp_path, {TOKEN: active(), "t2": active(sub="eve")})
    try:
        api = upstream(name="api")
        gw = gateway(intro_cfg(idp.url, api, ca_file=idp.ca), env={"IDP_SECRET": SECRET})
        assert get(gw).status == 200
        assert api.requests[-1].headers["x-user-id"] == "bob"
        assert get(gw).status == 200
        assert len(idp.calls) == 1  # cached
        assert get(gw, token="t2").status == 200
        assert api.requests[-1].headers["x-user-id"] == "eve"
        assert len(idp.calls) == 2
        want = base64.b64encode(b"gw+client:s3%3Acr%26t").decode()
        assert all(c[1]["Authorization"] == "Basic " + want for c in idp.calls)
        assert idp.calls[0][2]["token"] == [TOKEN]
        assert idp.calls[0][0] == idp.calls[1][0]  # one kept-alive TLS connection
        # the name checked can be the certificate's DNS name instead of the address
        gw2 = gateway(intro_cfg(idp.url, api, ca_file=idp.ca, server_name="idp.test"),
                      env={"IDP_SECRET": SECRET})
        assert get(gw2, token="t2").status == 200
    finally:
        idp.stop()


def test_https_idp_unverifiable_fails_closed(upstream, gateway, tmp_path):
    idp = TlsIdP(tmp_path, {TOKEN: active()})
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = make_cert(other, "other")
    try:
        api = upstream(name="api")
        for settings in ({"ca_file": other_ca},  # another CA
                         {"ca_file": idp.ca, "server_name": "wrong.test"}):  # another name
            gw = gateway(intro_cfg(idp.url, api, **settings), env={"IDP_SECRET": SECRET})
            r = get(gw)
            assert r.status == 503, (settings, r)
            assert metric(gw, "error") == 1
        assert not idp.calls and not api.requests
    finally:
        idp.stop()


def test_config_errors_name_the_path(upstream, tmp_path):
    api = upstream(name="api")

    def check(cfg, expect, env=None):
        code, out = run_check(cfg, tmp_path, env={"IDP_SECRET": SECRET} if env is None else env)
        assert code != 0 and expect in out, out

    check(intro_cfg("https://127.0.0.1:9/i", api, ca_file=str(tmp_path / "none.pem")),
          "auth.introspection.ca_file: cannot load CA certificates")
    check(intro_cfg("http://127.0.0.1:9/i", api, server_name="idp.test"),
          "auth.introspection.server_name: only for an https:// url")
    check(intro_cfg("http://idp.example/i", api),
          "auth.introspection.url: the host must be an IP address")
    check(intro_cfg("http://127.0.0.1:9/i", api, client_auth="jwt"),
          "auth.introspection.client_auth")
    check(intro_cfg("http://127.0.0.1:9/i", api, timeout_ms=0),
          "auth.introspection.timeout_ms")
    check(intro_cfg("http://127.0.0.1:9/i", api, cache_size=5),
          "auth.introspection.cache_size")
    check(intro_cfg("http://127.0.0.1:9/i", api, client_secret=""),
          "auth.introspection.client_secret: required")
    check(intro_cfg("http://127.0.0.1:9/i", api, forward_claims={"sub": "Host"}),
          "auth.introspection.forward_claims.sub")
    check(intro_cfg("http://127.0.0.1:9/i", api), "IDP_SECRET", env={})
    routes = [{"name": "api", "paths": ["/api"], "upstream": "api",
               "auth": {"introspection": {"roles": ["x"]}}}]
    check(intro_cfg("http://127.0.0.1:9/i", api, routes),
          "routes[0].auth.introspection.roles")
    cfg = base_config(upstreams=[api], routes=[
        {"name": "api", "paths": ["/api"], "upstream": "api",
         "auth": {"any_of": [{"introspection": {}}]}}])
    check(cfg, "routes[0].auth.any_of[0].introspection: auth.introspection is not configured")
    code, out = run_check(intro_cfg("http://127.0.0.1:9/i", api), tmp_path,
                          env={"IDP_SECRET": SECRET})
    assert code == 0, out
