"""End-to-end: JWT (every JOSE algorithm), the attack battery, API keys, roles/scopes,
any_of, schedules, identity-header stripping, JWKS rotation on SIGHUP and on disk.

Keys and tokens are generated at test time with python3-jwt and python3-cryptography;
nothing private is written outside the test's tmp_path.
"""
import base64
import datetime
import hashlib
import hmac
import json
import os
import time
import zoneinfo

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import http_raw, http_request

ISSUER = "https://auth.xgate.test"
AUDIENCE = "xgate-e2e"
API_KEY = "k-mobile-" + base64.urlsafe_b64encode(os.urandom(18)).decode()
ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA"]
# (algorithm, kid) pairs that must all pass; EdDSA is tried with both Edwards curves.
SIGNERS = [(a, {"HS": "hs", "RS": "rsa", "PS": "rsa"}.get(a[:2], None)) for a in ALGORITHMS]
SIGNERS = [(a, k or {"ES256": "p256", "ES384": "p384", "ES512": "p521",
                     "EdDSA": "ed25519"}[a]) for a, k in SIGNERS] + [("EdDSA", "ed448")]


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """Private keys of the test issuer and their public JWKs."""

    def __init__(self):
        self.private = {
            "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "p256": ec.generate_private_key(ec.SECP256R1()),
            "p384": ec.generate_private_key(ec.SECP384R1()),
            "p521": ec.generate_private_key(ec.SECP521R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate(),
            "ed448": ed448.Ed448PrivateKey.generate(),
            "hs": os.urandom(64),
            "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        }

    def jwk(self, kid):
        key = self.private[kid]
        if isinstance(key, bytes):
            text = HMACAlgorithm.to_jwk(key)
        elif isinstance(key, rsa.RSAPrivateKey):
            text = RSAAlgorithm.to_jwk(key.public_key())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            text = ECAlgorithm.to_jwk(key.public_key())
        else:
            text = OKPAlgorithm.to_jwk(key.public_key())
        out = json.loads(text) if isinstance(text, str) else dict(text)
        out["kid"] = kid
        return out

    def write_jwks(self, path, kids):
        tmp = str(path) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"keys": [self.jwk(k) for k in kids]}, fh)
        os.replace(tmp, path)

    def public_pem(self, kid):
        return self.private[kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys():
    return Keys()


def claims(**extra):
    now = int(time.time())
    out = {"sub": "user-42", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
           "email": "u42@example.com", "roles": ["user"], "scope": "pay:read"}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def token(keys, alg="ES256", kid="p256", headers=None, **extra):
    hdr = {"kid": kid} if kid else {}
    hdr.update(headers or {})
    return jwt.encode(claims(**extra), keys.private[kid if kid else "p256"], algorithm=alg,
                      headers=hdr)


def raw_token(header, payload, sign):
    """A token with a header and payload exactly as given; sign(signing_input) -> bytes."""
    head = b64(header if isinstance(header, str) else json.dumps(header))
    body = b64(payload if isinstance(payload, str) else json.dumps(payload))
    signing_input = ("%s.%s" % (head, body)).encode()
    return "%s.%s.%s" % (head, body, b64(sign(signing_input)))


def es256_sign(keys, der=False):
    def sign(data):
        sig = keys.private["p256"].sign(data, ec.ECDSA(hashes.SHA256()))
        if der:
            return sig
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        r, s = decode_dss_signature(sig)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


ROUTES = [
    {"name": "open", "paths": ["/open"], "upstream": "svc"},
    {"name": "jwt", "paths": ["/jwt"], "upstream": "svc", "auth": {"jwt": {}}},
    {"name": "admin", "paths": ["/admin"], "upstream": "svc",
     "auth": {"jwt": {"roles": ["admin", "ops"]}}},
    {"name": "pay", "paths": ["/pay"], "upstream": "svc",
     "auth": {"jwt": {"scopes": ["pay:read", "pay:write"]}}},
    {"name": "key", "paths": ["/key"], "upstream": "svc", "auth": {"api_key": {}}},
    {"name": "keyadmin", "paths": ["/keyadmin"], "upstream": "svc",
     "auth": {"api_key": {"roles": ["admin"]}}},
    {"name": "either", "paths": ["/either"], "upstream": "svc",
     "auth": {"any_of": [{"jwt": {}}, {"api_key": {}}]}},
]


def auth_config(base_config, up, jwks_path, routes=None, jwt_extra=None):
    jwt_cfg = {"jwks_file": str(jwks_path), "algorithms": ALGORITHMS, "issuer": ISSUER,
               "audience": AUDIENCE, "leeway_s": 5,
               "forward_claims": {"sub": "X-User-Id", "email": "X-Email"}}
    jwt_cfg.update(jwt_extra or {})
    return base_config(
        [{"name": "svc", "targets": [{"address": up.address}]}], routes or ROUTES,
        auth={"jwt": jwt_cfg, "api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "mobile-app", "api_keys": [API_KEY], "roles": ["user"]}])


@pytest.fixture
def gw_keys(keys, gateway, upstream, base_config, tmp_path):
    """A gateway with every key in its JWKS, and its upstream."""
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["rsa", "p256", "p384", "p521", "ed25519", "ed448", "hs"])
    gw = gateway(auth_config(base_config, up, jwks))
    return gw, up, jwks


def get(gw, path, tok=None, headers=None):
    hdrs = dict(headers or {})
    if tok is not None:
        hdrs["Authorization"] = "Bearer " + tok
    return http_request("GET", gw.url(path), None, hdrs)


def assert_401(resp, what):
    assert resp.status == 401, "%s: expected 401, got %d %r" % (what, resp.status, resp.body)
    assert resp.headers.get("www-authenticate") == 'Bearer error="invalid_token"', what
    body = resp.json()
    assert body["status"] == 401 and body["error"], what


def test_every_algorithm_reaches_upstream_with_claims(keys, gw_keys):
    gw, up, _ = gw_keys
    for alg, kid in SIGNERS:
        tok = token(keys, alg, kid, sub="sub-" + alg + "-" + kid)
        resp = get(gw, "/jwt/x", tok)
        assert resp.status == 200, "%s/%s: %d %r" % (alg, kid, resp.status, resp.body)
        seen = up.requests[-1]
        assert seen.headers.get("x-user-id") == "sub-%s-%s" % (alg, kid)
        assert seen.headers.get("x-email") == "u42@example.com"
    assert len(up.requests) == len(SIGNERS)


def attack_battery(keys):
    """(name, path, headers, expected status) for every rejection in the contract."""
    now = int(time.time())
    rsa_pem = keys.public_pem("rsa")
    good = claims()
    attacks = [
        ("no credentials", "/jwt", {}, 401),
        ("basic scheme", "/jwt", {"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ("empty bearer", "/jwt", {"Authorization": "Bearer "}, 401),
        ("alg none, no signature",
         "/jwt", {"Authorization": "Bearer %s.%s." % (b64('{"alg":"none"}'), b64(json.dumps(good)))},
         401),
        ("alg none with signature", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "none", "kid": "p256"}, good,
                                                 lambda d: b"x" * 32)}, 401),
        ("alg NONE", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "NONE"}, good, lambda d: b"x")}, 401),
        ("HMAC keyed with the RSA public key", "/jwt",
         {"Authorization": "Bearer " + raw_token(
             {"alg": "HS256", "kid": "rsa"}, good,
             lambda d: hmac.new(rsa_pem, d, hashlib.sha256).digest())}, 401),
        ("ES256 token naming an RSA key", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256", "kid": "rsa"}, good,
                                                 es256_sign(keys))}, 401),
        ("unknown kid", "/jwt", {"Authorization": "Bearer " + token(keys, "ES256", "p256",
                                                                    headers={"kid": "gone"})},
         401),
        ("no kid among several keys", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256"}, good, es256_sign(keys))}, 401),
        ("embedded jwk", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256", "jwk": keys.jwk("p256")}, good,
                                                 es256_sign(keys))}, 401),
        ("crit header", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256", "kid": "p256",
                                                  "crit": ["exp"]}, good, es256_sign(keys))},
         401),
        ("duplicate header members", "/jwt",
         {"Authorization": "Bearer " + raw_token('{"alg":"ES256","kid":"p256","kid":"rsa"}',
                                                 good, es256_sign(keys))}, 401),
        ("malformed header JSON", "/jwt",
         {"Authorization": "Bearer " + raw_token('{"alg":"ES256","kid":"p256"', good,
                                                 es256_sign(keys))}, 401),
        ("malformed payload JSON", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256", "kid": "p256"}, '{"sub":',
                                                 es256_sign(keys))}, 401),
        ("duplicate claims", "/jwt",
         {"Authorization": "Bearer " + raw_token(
             {"alg": "ES256", "kid": "p256"},
             json.dumps(good)[:-1] + ', "sub": "admin"}', es256_sign(keys))}, 401),
        ("DER ECDSA signature", "/jwt",
         {"Authorization": "Bearer " + raw_token({"alg": "ES256", "kid": "p256"}, good,
                                                 es256_sign(keys, der=True))}, 401),
        ("expired", "/jwt", {"Authorization": "Bearer " + token(keys, exp=now - 60)}, 401),
        ("not yet valid", "/jwt", {"Authorization": "Bearer " + token(keys, nbf=now + 600)}, 401),
        ("issued in the future", "/jwt",
         {"Authorization": "Bearer " + token(keys, iat=now + 600)}, 401),
        ("wrong issuer", "/jwt",
         {"Authorization": "Bearer " + token(keys, iss="https://evil.test")}, 401),
        ("no issuer", "/jwt", {"Authorization": "Bearer " + token(keys, iss=None)}, 401),
        ("wrong audience", "/jwt", {"Authorization": "Bearer " + token(keys, aud="other")}, 401),
        ("audience array without ours", "/jwt",
         {"Authorization": "Bearer " + token(keys, aud=["a", "b"])}, 401),
        ("oversized token", "/jwt",
         {"Authorization": "Bearer " + token(keys, pad="x" * 9000)}, 401),
        ("claim injecting a header", "/jwt",
         {"Authorization": "Bearer " + token(keys, email="a@x\r\nX-Admin: 1")}, 401),
        ("missing role", "/admin", {"Authorization": "Bearer " + token(keys)}, 403),
        ("missing scope", "/pay", {"Authorization": "Bearer " + token(keys)}, 403),
        ("bad API key", "/key", {"X-API-Key": "k-mobile-guess"}, 401),
        ("no API key", "/key", {}, 401),
        ("API key on a JWT route", "/jwt", {"X-API-Key": API_KEY}, 401),
        ("API key without the role", "/keyadmin", {"X-API-Key": API_KEY}, 403),
        ("any_of without credentials", "/either", {}, 401),
    ]
    tok = token(keys)
    head, body, sig = tok.split(".")
    forged = b64(json.dumps(claims(roles=["admin"])))
    attacks += [
        ("payload swapped under a valid signature", "/admin",
         {"Authorization": "Bearer %s.%s.%s" % (head, forged, sig)}, 401),
        ("padded base64url", "/jwt", {"Authorization": "Bearer %s.%s.%s==" % (head, body, sig)},
         401),
        ("standard base64 alphabet", "/jwt",
         {"Authorization": "Bearer %s.%s.%s" % (head, body, "+" + sig[1:])}, 401),
        ("four segments", "/jwt", {"Authorization": "Bearer %s.x" % tok}, 401),
    ]
    return attacks


def test_attack_battery_never_reaches_upstream(keys, gw_keys):
    gw, up, _ = gw_keys
    for name, path, headers, status in attack_battery(keys):
        resp = http_request("GET", gw.url(path), None, headers)
        if status == 401:
            assert_401(resp, name)
        else:
            assert resp.status == status, "%s: %d %r" % (name, resp.status, resp.body)
            assert resp.json()["status"] == status, name
    assert up.requests == [], [r.path for r in up.requests]
    # A valid token still works on the same gateway afterwards.
    assert get(gw, "/jwt", token(keys)).status == 200


def test_two_authorization_headers_are_refused(keys, gw_keys):
    gw, up, _ = gw_keys
    tok = token(keys)
    raw = ("GET /jwt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Authorization: Bearer %s\r\nConnection: close\r\n\r\n" % (tok, tok)).encode()
    reply = http_raw(gw.port(), raw)
    assert reply.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"401"), reply[:200]
    assert up.requests == []


def test_roles_scopes_api_keys_and_any_of(keys, gw_keys):
    gw, up, _ = gw_keys
    assert get(gw, "/admin", token(keys, roles=["ops"])).status == 200
    # A string roles claim is one role unless auth.jwt.roles_split says otherwise.
    assert get(gw, "/admin", token(keys, roles="user admin")).status == 403
    assert get(gw, "/admin", token(keys, roles="admin")).status == 200
    assert get(gw, "/pay", token(keys, scope="pay:write pay:read")).status == 200
    assert get(gw, "/pay", token(keys, scope="pay:write")).status == 403
    resp = get(gw, "/key", headers={"X-API-Key": API_KEY})
    assert resp.status == 200
    assert up.requests[-1].headers.get("x-consumer") == "mobile-app"
    assert "x-user-id" not in up.requests[-1].headers
    assert get(gw, "/either", headers={"X-API-Key": API_KEY}).status == 200
    assert up.requests[-1].headers.get("x-consumer") == "mobile-app"
    assert get(gw, "/either", token(keys, "EdDSA", "ed25519")).status == 200
    assert up.requests[-1].headers.get("x-user-id") == "user-42"
    assert "x-consumer" not in up.requests[-1].headers
    # An expired token next to a valid API key: the key still gets in.
    resp = get(gw, "/either", token(keys, exp=int(time.time()) - 600),
               headers={"X-API-Key": API_KEY})
    assert resp.status == 200


def test_roles_split_string_claim(keys, gateway, upstream, base_config, tmp_path):
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["p256"])
    gw = gateway(auth_config(base_config, up, jwks, jwt_extra={"roles_split": True}))
    assert get(gw, "/admin", token(keys, roles="user admin")).status == 200
    assert get(gw, "/admin", token(keys, roles="user administrator")).status == 403
    assert get(gw, "/admin", token(keys, roles=["user admin"])).status == 403


def test_token_issued_this_second_is_valid_at_every_instant(keys, gateway, upstream, base_config,
                                                            tmp_path):
    """iat = nbf = the current second with no leeway: accepted also in the first milliseconds
    of a second, when a coarse clock (time(NULL)) would still read the previous one."""
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["p256"])
    gw = gateway(auth_config(base_config, up, jwks, jwt_extra={"leeway_s": 0}))
    refused = []
    for _ in range(4):
        time.sleep(1.0 - time.time() % 1.0)
        for _ in range(5):
            now = int(time.time())
            tok = token(keys, iat=now, nbf=now, sub="edge-%d" % len(refused))
            resp = get(gw, "/jwt/edge", tok)
            if resp.status != 200:
                refused.append((now, time.time() % 1.0, resp.status))
    assert not refused, refused


def test_spoofed_identity_headers_are_stripped(keys, gw_keys):
    gw, up, _ = gw_keys
    spoof = {"X-User-Id": "admin", "X-Email": "ceo@example.com", "X-Consumer": "root",
             "x-user-id": "admin2"}
    assert get(gw, "/open/x", headers=spoof).status == 200
    seen = up.requests[-1]
    for name in ("x-user-id", "x-email", "x-consumer"):
        assert name not in seen.headers, (name, seen.raw_headers)
    assert get(gw, "/jwt", token(keys), headers=spoof).status == 200
    seen = up.requests[-1]
    assert [v for n, v in seen.raw_headers if n.lower() == "x-user-id"] == ["user-42"]
    assert [v for n, v in seen.raw_headers if n.lower() == "x-email"] == ["u42@example.com"]
    assert "x-consumer" not in seen.headers
    assert get(gw, "/key", headers=dict(spoof, **{"X-API-Key": API_KEY})).status == 200
    seen = up.requests[-1]
    assert [v for n, v in seen.raw_headers if n.lower() == "x-consumer"] == ["mobile-app"]
    assert "x-user-id" not in seen.headers


def seoul_window(offset_from_now_min, length_min):
    now = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Seoul"))
    start = now + datetime.timedelta(minutes=offset_from_now_min)
    end = start + datetime.timedelta(minutes=length_min)
    return {"from": start.strftime("%H:%M"), "to": end.strftime("%H:%M"), "tz": "Asia/Seoul"}


def test_schedule_deny_window_in_seoul(gateway, upstream, base_config, keys, tmp_path):
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["p256"])
    routes = [
        {"name": "transfer", "paths": ["/transfer"], "upstream": "svc", "auth": {"jwt": {}},
         # now-60min .. now+60min Seoul time, across midnight when it happens to be near
         "schedule": {"deny": [seoul_window(-60, 120)]}},
        {"name": "later", "paths": ["/later"], "upstream": "svc",
         "schedule": {"deny": [seoul_window(180, 60)]}},
    ]
    gw = gateway(auth_config(base_config, up, jwks, routes=routes))
    resp = get(gw, "/transfer", token(keys))
    assert resp.status == 403 and resp.json()["status"] == 403
    assert_401(get(gw, "/transfer"), "unauthenticated inside the window")
    assert get(gw, "/later").status == 200
    assert [r.path for r in up.requests] == ["/later"]


def wait_status(gw, path, tok, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        status = get(gw, path, tok).status
        if status == want or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_jwks_rotation_sighup_and_on_disk(gateway, upstream, base_config, keys, tmp_path):
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["rsa", "rsa2", "p256"])
    gw = gateway(auth_config(base_config, up, jwks))
    old = token(keys, "RS256", "rsa")
    new = token(keys, "RS256", "rsa2")
    ec_tok = token(keys, "ES256", "p256")
    for _ in range(3):  # verified once, then served from the per-worker cache
        assert get(gw, "/jwt", old).status == 200
    assert get(gw, "/jwt", new).status == 200

    # Rotate "rsa" out and reload: the cached token must be refused from then on.
    keys.write_jwks(jwks, ["rsa2", "p256"])
    gw.reload()
    assert wait_status(gw, "/jwt", old, 401) == 401
    for _ in range(5):
        assert_401(get(gw, "/jwt", old), "removed key after SIGHUP")
    assert get(gw, "/jwt", new).status == 200
    assert get(gw, "/jwt", ec_tok).status == 200

    # Without SIGHUP: the file is watched (about once a second).
    keys.write_jwks(jwks, ["rsa2"])
    assert wait_status(gw, "/jwt", ec_tok, 401, timeout=5.0) == 401
    seen = len(up.requests)
    assert get(gw, "/jwt", new).status == 200
    # A broken file keeps the last good keys.
    with open(jwks, "w") as fh:
        fh.write('{"keys": [')
    time.sleep(2.5)
    assert get(gw, "/jwt", new).status == 200
    assert gw.alive()
    assert len(up.requests) == seen + 2


def test_pem_public_keys(gateway, upstream, base_config, keys, tmp_path):
    up = upstream(name="svc")
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(keys.public_pem("rsa"))
    cfg = auth_config(base_config, up, "unused", routes=ROUTES[:2])
    del cfg["auth"]["jwt"]["jwks_file"]
    cfg["auth"]["jwt"]["public_keys"] = [{"file": str(pem), "kid": "rsa"}]
    gw = gateway(cfg)
    assert get(gw, "/jwt", token(keys, "PS256", "rsa")).status == 200
    assert_401(get(gw, "/jwt", token(keys, "ES256", "p256")), "key not configured")


def test_config_errors_name_their_path(gateway, upstream, base_config, keys, tmp_path):
    from conftest import run_check
    up = upstream(name="svc")
    jwks = tmp_path / "jwks.json"
    keys.write_jwks(jwks, ["p256"])
    cfg = auth_config(base_config, up, jwks, jwt_extra={"algorithms": ["RS256", "RS999",
                                                                       "none"]})
    cfg["routes"].append({"name": "bad", "paths": ["/bad"], "upstream": "svc",
                          "schedule": {"deny": [{"from": "25:00", "to": "01:00"}]}})
    code, out = run_check(cfg, tmp_path)
    assert code == 1, out
    assert 'auth.jwt.algorithms[1]: unknown algorithm "RS999"' in out
    assert 'auth.jwt.algorithms[2]: algorithm "none" is never accepted' in out
    cfg = auth_config(base_config, up, tmp_path / "missing.json")
    code, out = run_check(cfg, tmp_path)
    assert code == 1 and "auth.jwt.jwks_file: cannot open" in out, out
    cfg = base_config([{"name": "svc", "targets": [{"address": up.address}]}],
                      [{"name": "r", "paths": ["/r"], "upstream": "svc", "auth": {"jwt": {}}}])
    code, out = run_check(cfg, tmp_path)
    assert code == 1 and "routes[0].auth.jwt: auth.jwt is not configured" in out, out
