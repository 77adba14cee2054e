"""mTLS: listener tls.client_ca / client_auth / verify_depth / crl, route "auth": {"mtls"},
X-Client-Cert-Subject forwarded (a client's own copy never), the subject in the access log,
reload picking up a new CA and CRL, and the config errors with their JSON paths.

The PKI is generated per test with python3-cryptography: a root CA, partner-a and partner-b
(O=Bank), a certificate with partner-a's subject from another CA, a revoked one, and one
issued through an intermediate CA.
"""
import datetime
import json
import socket
import ssl
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import http_request, run_check

API_KEY = "k-mtls-app-0123456789"
SUBJECT_A = "CN=partner-a,O=Bank"
SUBJECT_B = "CN=partner-b,O=Bank"
NOW = datetime.datetime.now(datetime.timezone.utc)


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject, key, issuer=None, issuer_key=None, ca=False, sans=None):
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(minutes=5))
         .not_valid_after(NOW + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


class Pki:
    def __init__(self, d):
        self.dir = d
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = issue(name("Test Root", "Bank"), self.root_key, ca=True)
        other_key = self.other_key = ec.generate_private_key(ec.SECP256R1())
        self.other = issue(name("Other Root", "Elsewhere"), other_key, ca=True)
        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = issue(name("Test Intermediate", "Bank"), inter_key, self.root, self.root_key,
                      ca=True)
        self.ca = self.write("ca.pem", pem_cert(self.root))
        self.other_ca = self.write("other-ca.pem", pem_cert(self.other))
        self.clients = {}
        self.client("a", name("partner-a", "Bank"), self.root, self.root_key,
                    [x509.DNSName("partner-a.example")])
        self.client("b", name("partner-b", "Bank"), self.root, self.root_key,
                    [x509.DNSName("partner-b.example")])
        self.client("foreign", name("partner-a", "Bank"), self.other, other_key)
        self.revoked = self.client("revoked", name("revoked", "Bank"), self.root, self.root_key)
        self.client("deep", name("partner-deep", "Bank"), inter, inter_key, chain=[inter])
        self.crl_path = str(d / "crl.pem")
        self.write_crl([])
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = issue(name("gw.test"), server_key, sans=[x509.DNSName("gw.test")])
        self.server = (self.write("server.crt", pem_cert(server)),
                       self.write("server.key", pem_key(server_key)))

    def write(self, fname, data):
        path = self.dir / fname
        path.write_bytes(data)
        return str(path)

    def client(self, tag, subject, issuer, issuer_key, sans=None, chain=()):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(subject, key, issuer, issuer_key, sans=sans)
        self.clients[tag] = (
            self.write(tag + ".crt", pem_cert(cert) + b"".join(pem_cert(c) for c in chain)),
            self.write(tag + ".key", pem_key(key)))
        return cert

    def write_crl(self, revoked, other_ca_too=False):
        """The root's CRL revoking these certificates (and an empty one of the other CA)."""
        issuers = [(self.root, self.root_key, revoked)]
        if other_ca_too:
            issuers.append((self.other, self.other_key, []))
        out = b""
        for ca, key, certs in issuers:
            b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
                 .last_update(NOW - datetime.timedelta(minutes=5))
                 .next_update(NOW + datetime.timedelta(days=1)))
            for cert in certs:
                b = b.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                    .revocation_date(NOW - datetime.timedelta(minutes=1)).build())
            out += b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        with open(self.crl_path, "wb") as f:
            f.write(out)


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def mtls_listener(pki, free_port, name_, **tls):
    t = {"certificates": [{"cert": pki.server[0], "key": pki.server[1]}],
         "client_ca": pki.ca}
    t.update(tls)
    return {"name": name_, "address": "127.0.0.1:%d" % free_port(), "tls": t}


ROUTES = [
    {"name": "a", "paths": ["/a"], "auth": {"mtls": {"subjects": ["cn=Partner-A, o=bank"]}}},
    {"name": "any", "paths": ["/any"],
     "auth": {"any_of": [{"mtls": {"subjects": [SUBJECT_A]}}, {"api_key": {}}]}},
    {"name": "san", "paths": ["/san"], "auth": {"mtls": {"sans": ["PARTNER-A.example"]}}},
    {"name": "verified", "paths": ["/verified"], "auth": {"mtls": {}}},
    {"name": "open", "paths": ["/"]},
]


def gateway_config(base_config, up, pki, free_port, crl=True):
    routes = [dict(r, upstream=up.name) for r in ROUTES]
    cfg = base_config(upstreams=[up], routes=routes,
                      consumers=[{"name": "app", "api_keys": [API_KEY]}])
    extra = {"crl": pki.crl_path} if crl else {}
    cfg["listeners"] += [
        mtls_listener(pki, free_port, "required", client_auth="required", **extra),
        mtls_listener(pki, free_port, "optional", client_auth="optional", **extra),
        mtls_listener(pki, free_port, "shallow", verify_depth=0),
    ]
    return cfg


def client_ctx(pki, who=None, tls13=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if who:
        ctx.load_cert_chain(*pki.clients[who])
    return ctx


class Refused(Exception):
    """The handshake failed or the gateway closed without answering."""


def get(port, ctx, path="/", headers=None, session=None, want_session=False):
    """One request; returns (status, JSON body or None, raw head) or raises Refused."""
    lines = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    req = ("GET %s HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n%s\r\n"
           % (path, lines)).encode()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="gw.test", session=session) as s:
                s.sendall(req)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                sess, reused = s.session, s.session_reused
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        raise Refused(str(e)) from e
    if not data:
        raise Refused("closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if want_session:
        return status, parsed, head, sess, reused
    return status, parsed, head


def refused(port, ctx, path="/"):
    try:
        get(port, ctx, path)
    except Refused:
        return True
    return False


def upstream_headers(body):
    return body["headers"]


def metric(gw, series):
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("tls13", [True, False], ids=["tls1.3", "tls1.2"])
def test_required_listener(gateway, upstream, base_config, free_port, pki, tls13):
    up = upstream(name="app")
    pki.write_crl([pki.revoked])
    gw = gateway(gateway_config(base_config, up, pki, free_port))
    port = gw.port(1)
    # Handshake refused without a certificate, with one of another CA, with a revoked one.
    assert refused(port, client_ctx(pki, None, tls13))
    assert refused(port, client_ctx(pki, "foreign", tls13))
    assert refused(port, client_ctx(pki, "revoked", tls13))
    # partner-a: allowed on /a; the subject goes upstream, the client's forgery does not.
    status, body, _ = get(port, client_ctx(pki, "a", tls13), "/a",
                          {"X-Client-Cert-Subject": "CN=admin,O=Bank",
                           "X_Client_Cert_Subject": "CN=admin,O=Bank"})
    assert status == 200, body
    hdrs = upstream_headers(body)
    assert hdrs["x-client-cert-subject"] == SUBJECT_A, hdrs
    assert "x_client_cert_subject" not in hdrs, hdrs
    # partner-b is verified but not listed: 403; on an open route it still gets through.
    status, body, head = get(port, client_ctx(pki, "b", tls13), "/a")
    assert status == 403 and body["error"] == "forbidden_subject", (status, body)
    assert b"WWW-Authenticate" not in head
    status, body, _ = get(port, client_ctx(pki, "b", tls13), "/open")
    assert status == 200 and upstream_headers(body)["x-client-cert-subject"] == SUBJECT_B
    # SAN routes: partner-a's DNS SAN matches case-insensitively, partner-b's does not.
    assert get(port, client_ctx(pki, "a", tls13), "/san")[0] == 200
    assert get(port, client_ctx(pki, "b", tls13), "/san")[0] == 403
    assert metric(gw, 'xgate_auth_failures_total{reason="forbidden_subject"}') >= 2


def test_optional_listener(gateway, upstream, base_config, free_port, pki):
    up = upstream(name="app")
    pki.write_crl([pki.revoked])
    gw = gateway(gateway_config(base_config, up, pki, free_port))
    port = gw.port(2)
    anon = client_ctx(pki)
    # No certificate: the handshake completes; an mTLS route answers 401.
    status, body, head = get(port, anon, "/a", {"X-Client-Cert-Subject": SUBJECT_A})
    assert status == 401 and body["error"] == "missing", (status, body)
    assert b"WWW-Authenticate: Bearer" in head
    status, body, _ = get(port, anon, "/open", {"X-Client-Cert-Subject": SUBJECT_A})
    assert status == 200 and "x-client-cert-subject" not in upstream_headers(body), body
    # A certificate that does not verify (other CA, revoked): 401, and nothing forwarded.
    for who in ("foreign", "revoked"):
        status, body, _ = get(port, client_ctx(pki, who), "/a")
        assert status == 401 and body["error"] == "bad_client_cert", (who, status, body)
        status, body, _ = get(port, client_ctx(pki, who), "/open",
                              {"X-Client-Cert-Subject": SUBJECT_A})
        assert status == 200 and "x-client-cert-subject" not in upstream_headers(body)
        assert get(port, client_ctx(pki, who), "/verified")[0] == 401
    assert get(port, client_ctx(pki, "a"), "/a")[0] == 200
    assert get(port, client_ctx(pki, "b"), "/a")[0] == 403
    assert get(port, client_ctx(pki, "b"), "/verified")[0] == 200
    assert metric(gw, 'xgate_auth_failures_total{reason="bad_client_cert"}') >= 4
    # any_of with an API key: either credential, and the most telling failure otherwise.
    key = {"X-API-Key": API_KEY}
    assert get(port, client_ctx(pki, "a"), "/any")[0] == 200
    status, body, _ = get(port, anon, "/any", key)
    assert status == 200 and upstream_headers(body)["x-consumer"] == "app", body
    assert get(port, client_ctx(pki, "b"), "/any", key)[0] == 200
    assert get(port, client_ctx(pki, "b"), "/any")[0] == 403
    assert get(port, client_ctx(pki, "foreign"), "/any")[0] == 401
    assert get(port, anon, "/any", {"X-API-Key": "wrong"})[0] == 401
    assert get(port, anon, "/any")[0] == 401


def test_plain_listener_and_access_log(gateway, upstream, base_config, free_port, pki):
    up = upstream(name="app")
    gw = gateway(gateway_config(base_config, up, pki, free_port))
    # Over plain HTTP there is no certificate: 401, and a client's header never passes.
    resp = http_request("GET", gw.url("/a"), headers={"X-Client-Cert-Subject": SUBJECT_A})
    assert resp.status == 401
    resp = http_request("GET", gw.url("/open"), headers={"X-Client-Cert-Subject": SUBJECT_A})
    assert resp.status == 200 and "x-client-cert-subject" not in json.loads(resp.body)["headers"]
    assert get(gw.port(1), client_ctx(pki, "a"), "/a?who=a")[0] == 200
    assert get(gw.port(2), client_ctx(pki), "/open?who=anon")[0] == 200
    gw.wait_log(r'"client_cert":"CN=partner-a,O=Bank"')
    entries = {e["path"]: e for e in gw.access_log() if "path" in e}
    mine = [e for e in gw.access_log() if e.get("route") == "a" and e.get("status") == 200]
    assert mine and mine[-1]["client_cert"] == SUBJECT_A, mine
    assert mine[-1]["consumer"] == SUBJECT_A, mine
    anon = [e for e in entries.values() if e.get("route") == "open"]
    assert anon and all("client_cert" not in e for e in anon), anon


def test_verify_depth(gateway, upstream, base_config, free_port, pki):
    up = upstream(name="app")
    gw = gateway(gateway_config(base_config, up, pki, free_port, crl=False))
    # Issued through an intermediate: fine with the default depth, refused with depth 0.
    status, body, _ = get(gw.port(1), client_ctx(pki, "deep"), "/verified")
    assert status == 200
    assert upstream_headers(body)["x-client-cert-subject"] == "CN=partner-deep,O=Bank"
    assert refused(gw.port(3), client_ctx(pki, "deep"))
    assert get(gw.port(3), client_ctx(pki, "a"), "/a")[0] == 200


def test_reload_picks_up_new_crl_and_ca(gateway, upstream, base_config, free_port, pki):
    up = upstream(name="app")
    cfg = gateway_config(base_config, up, pki, free_port)
    gw = gateway(cfg)
    port = gw.port(1)
    ctx = client_ctx(pki, "revoked")
    status, _, _, session, _ = get(port, ctx, "/open", want_session=True)
    assert status == 200
    # The session resumes while nothing changed...
    status, _, _, session, reused = get(port, ctx, "/open", session=session, want_session=True)
    assert status == 200 and reused
    assert refused(port, client_ctx(pki, "foreign"))
    # Revoke it and trust the other CA too, in the same files: SIGHUP reads them again.
    pki.write_crl([pki.revoked])
    with open(pki.ca, "ab") as f:
        f.write(pem_cert(pki.other))
    gw.reload(cfg)
    gw.wait_log(r"generation 2")
    assert refused(port, client_ctx(pki, "revoked"))
    # ...but a session from before the reload does not skip the new check.
    with pytest.raises(Refused):
        get(port, ctx, "/open", session=session)
    # With a CRL configured, a CA without a CRL in the file vouches for nobody (fail closed).
    assert refused(port, client_ctx(pki, "foreign"))
    pki.write_crl([pki.revoked], other_ca_too=True)
    gw.reload(cfg)
    gw.wait_log(r"generation 3")
    status, body, _ = get(port, client_ctx(pki, "foreign"), "/open")
    assert status == 200 and upstream_headers(body)["x-client-cert-subject"] == SUBJECT_A
    # Foreign has partner-a's subject: a route listing that subject trusts whatever the
    # configured CAs vouch for.
    assert get(port, client_ctx(pki, "foreign"), "/a")[0] == 200


def test_config_errors(tmp_path, upstream, base_config, free_port, pki):
    up = upstream(name="app")
    notpem = str(tmp_path / "notpem.txt")
    with open(notpem, "w") as f:
        f.write("hello\n")
    cases = [
        ({"client_ca": str(tmp_path / "missing.pem")},
         'listeners[1].tls.client_ca: cannot read'),
        ({"client_ca": notpem}, "listeners[1].tls.client_ca: \"%s\" holds no PEM certificate"
         % notpem),
        ({"client_ca": None, "client_auth": "required"},
         'listeners[1].tls.client_auth: needs "client_ca"'),
        ({"client_ca": None, "crl": pki.crl_path}, 'listeners[1].tls.crl: needs "client_ca"'),
        ({"client_auth": "maybe"}, "listeners[1].tls.client_auth"),
        ({"verify_depth": 99}, "listeners[1].tls.verify_depth"),
        ({"crl": pki.ca}, "listeners[1].tls.crl: \"%s\" holds no PEM CRL" % pki.ca),
        ({"crl": str(tmp_path / "nocrl.pem")}, "listeners[1].tls.crl: cannot read"),
    ]
    for tls, expected in cases:
        cfg = base_config(upstreams=[up], routes=[{"name": "r", "paths": ["/"],
                                                   "upstream": up.name}])
        lst = mtls_listener(pki, free_port, "m")
        for k, v in tls.items():
            if v is None:
                lst["tls"].pop(k)
            else:
                lst["tls"][k] = v
        cfg["listeners"].append(lst)
        code, out = run_check(cfg, tmp_path)
        assert code != 0 and expected in out, (tls, out)
    cfg = base_config(upstreams=[up], routes=[
        {"name": "r", "paths": ["/"], "upstream": up.name,
         "auth": {"mtls": {"subjects": ["partner-a"]}}}])
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "routes[0].auth.mtls.subjects[0]: not an RFC 4514 name" in out, out
    # A valid mtls route but no listener asks for certificates: nobody could get in.
    cfg["routes"][0]["auth"] = {"mtls": {"subjects": [SUBJECT_A]}}
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "routes[0].auth: mtls needs a listener with tls.client_ca" in out, out
    # The valid variant passes.
    cfg = gateway_config(base_config, up, pki, free_port)
    code, out = run_check(cfg, tmp_path)
    assert code == 0, out


def test_composed_route_calls_carry_the_subject(gateway, upstream, base_config, free_port,
                                                pki):
    up = upstream(name="app")
    cfg = gateway_config(base_config, up, pki, free_port)
    cfg["routes"].insert(0, {"name": "agg", "paths": ["/agg"],
                             "auth": {"mtls": {"subjects": [SUBJECT_A]}},
                             "compose": {"calls": [{"name": "u", "upstream": "app",
                                                    "path": "/u"}]}})
    gw = gateway(cfg)
    status, _, _ = get(gw.port(2), client_ctx(pki, "a"), "/agg",
                       {"X-Client-Cert-Subject": "CN=admin,O=Bank"})
    assert status == 200
    assert up.requests[-1].headers["x-client-cert-subject"] == SUBJECT_A
    assert get(gw.port(2), client_ctx(pki, "b"), "/agg")[0] == 403
    assert get(gw.port(2), client_ctx(pki), "/agg")[0] == 401
