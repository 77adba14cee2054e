"""The `make run` demo config (config/xgate.json) with the demo services: it loads, and its
composed endpoints answer what the README and the printed curl lines promise — the BFF pair
of /api/profile (web: user + orders + payments; `X-Client: mobile`: a trimmed shape) and
/api/dashboard (account + recent transactions + investments, chained on the account id).
Ports, keys and the XDP interface are the test's own; everything else is the file as shipped."""
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_port, http_request, run_check, scaled, wait_port

REPO = Path(__file__).resolve().parents[2]
DEMO_PORTS = (9101, 9102, 9201, 9301, 9401)


@pytest.fixture
def demo(tmp_path, gateway):
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    cfg = json.loads((REPO / "config" / "xgate.json").read_text())
    ports = {p: free_port() for p in DEMO_PORTS}
    names = {9101: "users", 9102: "users", 9201: "orders", 9301: "payments", 9401: "bank"}
    services = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "scripts" / "demo_services.py")]
        + ["%s:%d" % (names[p], ports[p]) for p in DEMO_PORTS],
        stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_port(port, timeout=scaled(10))
        for up in cfg["upstreams"]:
            for t in up["targets"]:
                host, _, port = t["address"].rpartition(":")
                t["address"] = "%s:%d" % (host, ports[int(port)])
        cfg["listeners"] = [{"name": "public", "address": "127.0.0.1:%d" % free_port()}]
        cfg["admin"] = {"address": "127.0.0.1:%d" % free_port()}
        del cfg["edge"]
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk["kid"] = "demo"
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps({"keys": [jwk]}))
        cfg["auth"]["jwt"]["jwks_file"] = str(jwks)
        gw = gateway(cfg, env={"MOBILE_APP_KEY": "demo-mobile-key-for-tests"})
        now = int(time.time())
        claims = {"sub": "alice", "roles": ["user"], "iss": cfg["auth"]["jwt"]["issuer"],
                  "aud": cfg["auth"]["jwt"]["audience"], "iat": now, "exp": now + 600}
        token = pyjwt.encode(claims, key, algorithm="ES256", headers={"kid": "demo"})
        yield gw, {"Authorization": "Bearer " + token}, services
    finally:
        services.terminate()
        services.wait(10)


def test_demo_config_is_valid_as_shipped(tmp_path):
    cfg = json.loads((REPO / "config" / "xgate.json").read_text())
    code, out = run_check(cfg, tmp_path, env={"MOBILE_APP_KEY": "demo-mobile-key-for-tests"})
    # Only what `make run` creates may be missing: the demo JWKS (scripts/demo-token.py init).
    problems = [l for l in out.splitlines() if re.search(r"^\S+: ", l) and "jwks" not in l]
    assert not problems, out
    if (REPO / cfg["auth"]["jwt"]["jwks_file"]).exists():
        assert code == 0, out


def test_profile_web_shape(demo):
    gw, auth, _ = demo
    r = http_request("GET", gw.url("/api/profile?id=1"), headers=auth)
    assert r.status == 200, r
    doc = r.json()
    assert r.headers.get("x-xgate-completed") == "true"
    assert r.headers.get("cache-control") == "no-store"
    assert doc["user"]["name"] == "alice" and "instance" not in doc["user"], doc
    assert doc["orders"] and doc["orders"][0]["item"] == "mug", doc
    assert doc["payments"] and all(p["user"] == "alice" for p in doc["payments"]), doc
    assert "_errors" not in doc


def test_profile_mobile_shape(demo):
    gw, auth, _ = demo
    r = http_request("GET", gw.url("/api/profile?id=1"), headers=dict(auth, **{"X-Client": "mobile"}))
    assert r.status == 200, r
    doc = r.json()
    assert set(doc) == {"user", "orders"}, doc
    assert doc["user"] == {"name": "alice"}, doc


def test_dashboard_chained(demo):
    gw, auth, _ = demo
    r = http_request("GET", gw.url("/api/dashboard"), headers=auth)
    assert r.status == 200, r
    doc = r.json()
    assert doc["account"] == {"id": 10, "balance_cents": 152300, "currency": "EUR"}, doc
    assert len(doc["recent_transactions"]) == 3, doc
    assert doc["investments"]["total_cents"] == 1830000, doc
    assert set(doc["investments"]) == {"total_cents", "positions"}, doc
    assert http_request("GET", gw.url("/api/dashboard")).status == 401


def test_dashboard_partial_when_a_service_is_down(demo, tmp_path):
    """What a client sees on partial failure: 200 with what arrived, X-Xgate-Completed:
    false and the failed calls under _errors; the required call failing is a 502."""
    gw, auth, services = demo
    services.terminate()
    services.wait(10)
    r = http_request("GET", gw.url("/api/dashboard"), headers=auth)
    assert r.status == 502, r
    assert r.headers.get("x-xgate-completed") == "false"
